"""Production settings: everything variable comes from the environment (the release's env
file, see docs/decisions.md §3). A missing or malformed key stops start-up with ImproperlyConfigured
naming the key."""

from common.envcheck import (
    env_bool,
    env_broker,
    env_choice,
    env_db,
    env_email,
    env_from_email,
    env_hosts,
    env_int,
    env_origins,
    env_path,
    env_proxies,
    env_redis,
    env_release,
    env_secret_key,
    env_secret_key_fallbacks,
)

from .base import *  # noqa: F401

SECRET_KEY = env_secret_key("DJANGO_SECRET_KEY")
# A key rotation keeps sessions and signed cookies made with the previous key valid.
SECRET_KEY_FALLBACKS = env_secret_key_fallbacks("DJANGO_SECRET_KEY_FALLBACKS", SECRET_KEY)
ALLOWED_HOSTS = env_hosts("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env_origins("DJANGO_CSRF_TRUSTED_ORIGINS")
RELEASE = env_release("DJANGO_RELEASE")
TRUSTED_PROXIES = env_proxies("DJANGO_TRUSTED_PROXIES")
STATIC_ROOT = env_path("DJANGO_STATIC_ROOT")
MEDIA_ROOT = env_path("DJANGO_MEDIA_ROOT")
LOG_LEVEL = env_choice("DJANGO_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS")
HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD")
# Seconds an order detail response stays cached (apps/orders/caching.py); 0 = not cached.
ORDER_DETAIL_CACHE_TIMEOUT = env_int("DJANGO_ORDER_DETAIL_CACHE_SECONDS", 0, default=300)
# Server-Timing on responses (common/middleware/timing.py): for profiling, off by default.
SERVER_TIMING = env_bool("DJANGO_SERVER_TIMING", default=False)

# Requests go through PgBouncer (transaction pooling). Management commands that need a real
# session (migrate, dbshell, anything using server-side cursors, advisory locks or SET) run
# with DJANGO_DATABASE_DIRECT=1, which `orders-manage` sets by default: then the same
# "default" alias points at PostgreSQL itself through DATABASE_DIRECT_URL.
_pooled = env_db("DATABASE_URL")
_direct = env_db("DATABASE_DIRECT_URL")
USING_DIRECT_DATABASE = env_bool("DJANGO_DATABASE_DIRECT", default=False)
# How requests reach the database (docs/benchmarks.md, Tuning): "persistent" (the default)
# keeps one connection per worker to PgBouncer; "per-request" opens one to PgBouncer for every
# request; "pool" is Django's psycopg pool straight to PostgreSQL, without PgBouncer.
DB_CONNECTIONS = env_choice(
    "DJANGO_DB_CONNECTIONS", ("PERSISTENT", "PER-REQUEST", "POOL"), default="persistent"
)
if USING_DIRECT_DATABASE:
    DATABASES = {"default": {**_direct, "CONN_MAX_AGE": 0}}
elif DB_CONNECTIONS == "POOL":
    DATABASES = {
        "default": {
            **_direct,
            # A pool per worker process; CONN_MAX_AGE must stay 0 with Django's pool.
            "CONN_MAX_AGE": 0,
            "OPTIONS": {"pool": {"min_size": 1, "max_size": 4, "timeout": 10}},
        }
    }
else:
    DATABASES = {
        "default": {
            **_pooled,
            # Persistent client connections to PgBouncer; PgBouncer multiplexes them.
            "CONN_MAX_AGE": 60 if DB_CONNECTIONS == "PERSISTENT" else 0,
            "CONN_HEALTH_CHECKS": True,
            # Named cursors live in a session, which transaction pooling does not give us.
            "DISABLE_SERVER_SIDE_CURSORS": True,
        }
    }
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
# Django leaves psycopg's automatic prepared statements off (prepare_threshold=None), which
# transaction pooling requires; keep it that way explicitly.
DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None

CACHES = {
    "default": {
        "BACKEND": "common.redis_cache.RedisCache",
        "LOCATION": env_redis("REDIS_URL"),
        "KEY_PREFIX": "orders",
        "TIMEOUT": 300,
        "OPTIONS": dict(REDIS_CLIENT_OPTIONS),
    }
}

# Celery (config/celery.py): the broker, and its TLS options for rediss:// (envcheck.env_broker).
CELERY_BROKER_URL, CELERY_BROKER_USE_SSL = env_broker("CELERY_BROKER_URL")
# Celery itself reads the environment variable CELERY_BROKER_URL ahead of this setting, raw
# (query included: kombu would apply its own reading of the TLS options). The read and write
# URLs come before it: every connection uses the checked URL and the TLS options above.
CELERY_BROKER_READ_URL = CELERY_BROKER_WRITE_URL = CELERY_BROKER_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    # At least 300: above the task's longest retry countdown (see base.py).
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 300, default=300),
}

# Mail (order confirmations, sent by the worker): the SMTP server from one URL. The password
# is a setting like the database's: Django's error reports and the debug page mask it.
_email = env_email("EMAIL_URL")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email["EMAIL_HOST"]
EMAIL_PORT = _email["EMAIL_PORT"]
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
EMAIL_USE_TLS = _email["EMAIL_USE_TLS"]
EMAIL_USE_SSL = _email["EMAIL_USE_SSL"]
DEFAULT_FROM_EMAIL = env_from_email("DJANGO_DEFAULT_FROM_EMAIL", ALLOWED_HOSTS)
SERVER_EMAIL = DEFAULT_FROM_EMAIL

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names so nginx can serve /static/ with a year-long immutable cache.
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

# Behind nginx, which terminates TLS and sets X-Forwarded-Proto (overwriting the client's).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = HSTS_INCLUDE_SUBDOMAINS
SECURE_HSTS_PRELOAD = HSTS_PRELOAD
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
USE_X_FORWARDED_HOST = False

# The operator's explicit choice to turn one HSTS option off silences exactly the check that
# would complain about it; nothing else is ever silenced.
SILENCED_SYSTEM_CHECKS = []
if not HSTS_INCLUDE_SUBDOMAINS:
    SILENCED_SYSTEM_CHECKS.append("security.W005")
if not HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS.append("security.W021")

LOGGING = logging_config(LOG_LEVEL)
