"""Settings for the test suite: production-shaped (PostgreSQL, Redis, cached_db sessions, the
same middleware), served over plain HTTP by the test client. app/bin/test starts the servers
and exports ORDERS_TEST_DATABASE_URL and ORDERS_TEST_REDIS_URL."""

import os

import environ

from .base import *  # noqa: F401

SECRET_KEY = "test-only-secret-key-not-for-production-0123456789abcdefghijklmnop"
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
RELEASE = "test-release"

DATABASES = {
    "default": {
        **environ.Env.db_url_config(
            os.environ.get(
                "ORDERS_TEST_DATABASE_URL", "postgres://orders:orders@127.0.0.1:55432/orders"
            )
        ),
        "ENGINE": "django.db.backends.postgresql",
        # As in production behind PgBouncer.
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "DISABLE_SERVER_SIDE_CURSORS": True,
    }
}

_REDIS_URL = os.environ.get("ORDERS_TEST_REDIS_URL", "redis://:orders-test@127.0.0.1:56379/0")
CACHES = {
    "default": {
        "BACKEND": "common.redis_cache.RedisCache",
        "LOCATION": _REDIS_URL,
        "KEY_PREFIX": "orders-test",
        "TIMEOUT": 300,
        "OPTIONS": dict(REDIS_CLIENT_OPTIONS),
    }
}

# The broker is the test Redis, database 1 (the cache's database is flushed before each test).
CELERY_BROKER_URL = _REDIS_URL.rsplit("/", 1)[0] + "/1"
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DEFAULT_FROM_EMAIL = "orders@shop.example.test"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_ROOT = str(BASE_DIR / ".test-static")
MEDIA_ROOT = str(BASE_DIR / ".test-media")
LOGGING = logging_config("INFO")
SERVER_TIMING = True  # the timing tests read it; common/tests/test_timing.py turns it off too
# Query budgets must not depend on the clock: the tests of apps/accounts/authcache.py set it.
AUTH_CACHE_RECHECK_SECONDS = 3600
