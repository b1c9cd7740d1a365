"""Settings shared by every environment. Nothing here reads the environment:
production.py reads (and validates) it, test.py sets fixed values."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DEBUG = False

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "apps.accounts",
    "apps.catalog",
    "apps.orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Answers /livez and /healthz before ALLOWED_HOSTS, sessions or rate limits get a say.
    "common.middleware.health.HealthCheckMiddleware",
    "common.middleware.timing.RequestTimingMiddleware",
    "common.middleware.query.RejectNulQueryMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "common.middleware.common.ApiCommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "common.middleware.rate_limit.RateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
# JSON under /api/, Django's page elsewhere (as handler400/403/404/500 in config/urls.py).
CSRF_FAILURE_VIEW = "common.errors.csrf_failure"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
MEDIA_URL = "/media/"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sessions: read from Redis, written through to PostgreSQL, so an eviction never logs anyone
# out. The subclass only makes a dead Redis cost a cache miss instead of a 500.
SESSION_ENGINE = "common.sessions"
SESSION_CACHE_ALIAS = "default"

# API bodies are small; larger ones get 413 JSON (file uploads are not counted here).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

# Security settings that hold everywhere; production.py adds the HTTPS-only ones.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
# Health endpoints are reached over the local socket by deploy checks, without TLS.
SECURE_REDIRECT_EXEMPT = [r"^livez$", r"^healthz$"]

# --- The orders service's own knobs (constants, not environment: see README) ---
# Fixed-window rate limits: (requests, window seconds), per user for token-authenticated
# requests, per client IP otherwise.
RATE_LIMIT_USER = (1200, 60)
RATE_LIMIT_ANON = (300, 60)
# Never rate limited: health checks and the benchmark ceiling.
RATE_LIMIT_EXEMPT_PATHS = ("/livez", "/healthz", "/api/ping/", "/static/", "/media/")
# CIDRs (and "unix") whose X-Forwarded-For is believed; production.py reads it from the env.
TRUSTED_PROXIES = ()
# After a Redis error, skip Redis for this long (per process) so a dead Redis costs
# one connect timeout per window, not one per request.
REDIS_BACKOFF_SECONDS = 2.0
TOKEN_CACHE_TIMEOUT = 300
# A process re-checks for invalidations that could not reach Redis (revoked tokens, logouts)
# at least this often before trusting cached authentication (apps/accounts/authcache.py).
AUTH_CACHE_RECHECK_SECONDS = 2.0
CATEGORY_CACHE_TIMEOUT = 3600
# Order detail responses cached per order (apps/orders/caching.py); 0 turns it off.
# production.py reads DJANGO_ORDER_DETAIL_CACHE_SECONDS.
ORDER_DETAIL_CACHE_TIMEOUT = 300
# Server-Timing (app and database time) on every response: off unless the operator turns it
# on (DJANGO_SERVER_TIMING in production.py); it tells any client how long our queries take.
SERVER_TIMING = False
ORDERS_PAGE_SIZE = 20
ORDERS_MAX_PAGE_SIZE = 100
ORDER_MAX_LINES = 50
ORDER_MAX_QUANTITY = 1000
RELEASE = "dev"

# --- Mail -------------------------------------------------------------------------------------
# production.py reads the SMTP server from EMAIL_URL and the sender from DJANGO_DEFAULT_FROM_EMAIL.
# An SMTP server that stops answering costs a worker this long per attempt, not forever.
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = "orders@localhost"
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Celery (config/celery.py): order confirmation e-mails, sent after commit -------------------
# Read by config/celery.py through the CELERY_ namespace. production.py sets the broker from
# CELERY_BROKER_URL (a Redis instance of its own, maxmemory-policy noeviction) and its TLS options;
# memory:// here reaches nothing outside the process.
CELERY_BROKER_URL = "memory://"
CELERY_BROKER_USE_SSL = None
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
# JSON only: a pickle message from anyone who can write to the broker would run code.
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# No result backend: nothing reads results, and the database records the outcome
# (Order.confirmation_sent_at).
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged when it has finished, not when a worker took it: a worker that dies
# mid-task leaves it unacknowledged, and the broker delivers it again.
CELERY_TASK_ACKS_LATE = True
# ...and a pool process killed mid-task (OOM killer, SIGKILL) puts its task back in the queue
# instead of acknowledging it as failed.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Each pool process reserves one task at a time: with late acks, a prefetched task would sit
# unacknowledged behind a slow one (and be redelivered after the visibility timeout anyway).
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# On a lost broker connection, running tasks with late acks cannot be acknowledged any more
# and will be delivered again: cancel them rather than let them finish and run twice. (Celery
# 6's default; leaving it False warns on every connection loss.) The task is idempotent either way.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# A hung pool process (past EMAIL_TIMEOUT and the database's timeouts) is killed; its order
# stays unconfirmed and the periodic sweep queues it again (apps/orders/tasks.py).
CELERY_TASK_TIME_LIMIT = 120
# A worker or beat started while Redis is down waits for it instead of exiting.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A task taken but never acknowledged (its whole worker died) is delivered again after
    # this many seconds. production.py reads CELERY_VISIBILITY_TIMEOUT. It must stay above the
    # longest retry countdown (apps/orders/tasks.py RETRY_BACKOFF_MAX): a worker holds a
    # countdown task unacknowledged, and Redis would hand it out a second time.
    "visibility_timeout": 300,
    # Publishing happens in web requests: a dead or blackholed broker must cost at most about
    # a second (with the retry policy below), like the cache's 0.3 s (REDIS_CLIENT_OPTIONS).
    "socket_connect_timeout": 0.3,
    "socket_timeout": 0.5,
}
CELERY_BROKER_CONNECTION_TIMEOUT = 1
# Three tries 0 and 0.2 s apart, then the caller gets the error (services.create_order logs it,
# the periodic sweep sends the mail later).
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
# Logging is Django's LOGGING (JSON lines); config/celery.py keeps Celery's handlers out.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    # The safety net for confirmations whose task was never queued (broker down at the order's
    # commit) or got lost: apps/orders/tasks.py send_pending_confirmations.
    "send-pending-order-confirmations": {
        "task": "apps.orders.tasks.send_pending_confirmations",
        "schedule": 60.0,
        # Runs missed while no worker was up are not worth running back to back later.
        "options": {"expires": 55},
    },
}

REDIS_CLIENT_OPTIONS = {
    # A dead or unreachable Redis costs at most this, not seconds.
    "socket_connect_timeout": 0.3,
    "socket_timeout": 0.3,
    "health_check_interval": 30,
}


def logging_config(level: str) -> dict:
    """Structured (one JSON object per line) logs to stderr, which systemd sends to the journal."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "common.logging.JsonFormatter"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "json"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # The timing middleware logs every request itself; don't double up on 4xx/5xx.
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "ERROR"},
        },
    }
