"""The benchmark's baseline (`make bench`, role bench_baseline): the production settings as a
newcomer following the Django docs would run them. Never used by the production stack.

- Django's default connection handling: a new connection per request (CONN_MAX_AGE = 0),
  straight to PostgreSQL (DATABASE_DIRECT_URL), no PgBouncer.
- Static files served by the app (config.urls_baseline, django.views.static.serve).
- Django's own Redis cache backend (a new redis-py client per cache call), and no cached
  order detail responses.
Everything else (middleware, cache server, rate limits, security settings) is production's."""

from common.envcheck import env_db

from .production import *  # noqa: F401,F403

DATABASES = {
    "default": {
        **env_db("DATABASE_DIRECT_URL"),
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"connect_timeout": 5},
    }
}
ROOT_URLCONF = "config.urls_baseline"
CACHES["default"]["BACKEND"] = "django.core.cache.backends.redis.RedisCache"  # noqa: F405
ORDER_DETAIL_CACHE_TIMEOUT = 0
