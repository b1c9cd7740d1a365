"""Production settings: every value comes from the env file the stack writes for each release
(docs/decisions.md §3 of the blueprint); a missing key stops start-up naming it."""

import os
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from .settings import *  # noqa: F403


def env(key: str, default: str | None = None) -> str:
    value = os.environ.get(key, default)
    if value is None:
        raise ImproperlyConfigured(f"{key} is not set (the release's env file)")
    return value


def database(url: str) -> dict:
    """postgres://user:password@host:port/name?sslmode=...&sslrootcert=... as a Django database."""
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": parts.port or 5432,
        # psycopg's automatic prepared statements stay off: PgBouncer pools by transaction
        "OPTIONS": {
            **dict(parse_qsl(parts.query)),
            "connect_timeout": 5,
            "prepare_threshold": None,
        },
    }


DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
SECRET_KEY_FALLBACKS = [key for key in env("DJANGO_SECRET_KEY_FALLBACKS", "").split(",") if key]
ALLOWED_HOSTS = env("DJANGO_ALLOWED_HOSTS").split(",")
CSRF_TRUSTED_ORIGINS = env("DJANGO_CSRF_TRUSTED_ORIGINS").split(",")
RELEASE = env("DJANGO_RELEASE")
STATIC_ROOT = env("DJANGO_STATIC_ROOT")
MEDIA_ROOT = env("DJANGO_MEDIA_ROOT")
# An extra key of this project (django_app_extra_env in the inventory)
GREETING = env("HELLO_GREETING")

# Requests go through PgBouncer (DATABASE_URL); management commands (`hello-manage`, which sets
# DJANGO_DATABASE_DIRECT=1) straight to PostgreSQL (DATABASE_DIRECT_URL): migrate needs a session.
if env("DJANGO_DATABASE_DIRECT", "0") == "1":
    DATABASES = {"default": database(env("DATABASE_DIRECT_URL"))}
else:
    DATABASES = {"default": {**database(env("DATABASE_URL")), "CONN_MAX_AGE": 60,
                             "CONN_HEALTH_CHECKS": True, "DISABLE_SERVER_SIDE_CURSORS": True}}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("REDIS_URL"),
        "KEY_PREFIX": "hello",
    }
}

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # hashed names: nginx serves them for a year, immutable
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

# Behind nginx, which terminates TLS, sets X-Forwarded-Proto and owns the security headers
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = env("DJANGO_HSTS_INCLUDE_SUBDOMAINS") == "true"
SECURE_HSTS_PRELOAD = env("DJANGO_HSTS_PRELOAD") == "true"
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", "INFO")},
}
