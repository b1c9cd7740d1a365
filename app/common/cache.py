"""Redis access that degrades instead of failing.

The cache is an optimisation: with Redis down, reads are misses, writes are dropped, and the
caller goes to the database. After an error this process skips Redis for
REDIS_BACKOFF_SECONDS, so a blackholed Redis costs one connect timeout per window rather than
one per call. /healthz bypasses all of this and asks Redis directly."""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger("orders.cache")

_down_until = 0.0
_last_logged = 0.0
# When this process last saw Redis fail (apps/accounts/authcache.py re-checks after it).
last_error_at = 0.0


def redis_available() -> bool:
    return time.monotonic() >= _down_until


def mark_redis_down(exc: Exception, action: str) -> None:
    global _down_until, _last_logged, last_error_at
    now = time.monotonic()
    _down_until = now + settings.REDIS_BACKOFF_SECONDS
    last_error_at = now
    if now - _last_logged >= 10:  # one line per 10 s per process, not one per request
        _last_logged = now
        logger.warning(
            "redis unavailable, degrading",
            extra={"action": action, "error": type(exc).__name__},
        )


def reset() -> None:
    """Forget a previous failure (tests)."""
    global _down_until, _last_logged, last_error_at
    _down_until = 0.0
    _last_logged = 0.0
    last_error_at = 0.0


def raw_client():
    """The redis-py client behind Django's RedisCache (its private `_cache`): used for the
    atomic rate-limit script, which the cache API cannot express."""
    return cache._cache.get_client(write=True)


def safe_get(key: str, default=None):
    if not redis_available():
        return default
    try:
        return cache.get(key, default)
    except (RedisError, OSError) as exc:
        mark_redis_down(exc, "get")
        return default


def safe_get_many(keys: list[str]) -> dict:
    """One round trip (MGET) for several keys; {} while Redis is down."""
    if not redis_available():
        return {}
    try:
        return cache.get_many(keys)
    except (RedisError, OSError) as exc:
        mark_redis_down(exc, "get_many")
        return {}


def safe_set_many(values: dict, timeout: int | None = None) -> None:
    if not values or not redis_available():
        return
    try:
        cache.set_many(values, timeout)
    except (RedisError, OSError) as exc:
        mark_redis_down(exc, "set_many")


def safe_set(key: str, value, timeout: int | None = None) -> None:
    if not redis_available():
        return
    try:
        cache.set(key, value, timeout)
    except (RedisError, OSError) as exc:
        mark_redis_down(exc, "set")


def safe_add(key: str, value, timeout: int | None = None) -> bool:
    """SET NX: True if this call stored it; False if the key existed or Redis is away."""
    if not redis_available():
        return False
    try:
        return bool(cache.add(key, value, timeout))
    except (RedisError, OSError) as exc:
        mark_redis_down(exc, "add")
        return False


def safe_delete(*keys: str) -> None:
    """Invalidation of data that may be stale for a while: on failure (or inside the skip
    window) the entry may outlive its data until its timeout. Anything that authenticates
    (token look-ups, sessions) goes through apps/accounts/authcache.py instead."""
    if not keys or not redis_available():
        return
    try:
        cache.delete_many(keys)
    except (RedisError, OSError) as exc:
        mark_redis_down(exc, "delete")


def delete_now(*keys: str) -> bool:
    """Delete even inside the skip window (a skipped delete is a lost one); True once Redis
    has confirmed it, False if Redis could not be reached."""
    if not keys:
        return True
    try:
        cache.delete_many(keys)
    except (RedisError, OSError) as exc:
        mark_redis_down(exc, "delete")
        return False
    return True
