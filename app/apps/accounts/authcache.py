"""Cached authentication (token look-ups, sessions) fails closed when an invalidation is lost.

common/cache.py degrades a dead Redis to misses, and skips Redis for a while after an error.
For most entries a lost delete only means stale data for a short while. For an entry that
authenticates it means a revoked token or a logged-out session keeps working: for up to
TOKEN_CACHE_TIMEOUT, and for a session up to its whole age. So, for these entries:

1. The delete always goes to Redis, even inside the skip window (`invalidate`).
2. If Redis cannot be reached, the key is written to the database (LostInvalidation) in the
   same breath: the database is up (the revocation or logout itself just committed there).
3. A cached entry is only trusted (`get`) by a process that is "in sync": it has looked at the
   LostInvalidation table, deleted those keys from Redis (and then the rows), since it last
   saw Redis fail and within the last AUTH_CACHE_RECHECK_SECONDS. A new process starts out of
   sync. Out of sync, or with Redis unreachable, `get` is a miss and the caller asks the
   database, where the token row or the session row is already gone.

So the process that lost the invalidation, and every process that saw Redis fail, re-checks
before trusting Redis again; any other process (one on a host that could still reach Redis
during a partition, or one that sat idle through the outage) re-checks within
AUTH_CACHE_RECHECK_SECONDS. The warm path stays one Redis GET and no query, apart from one
query on a (normally empty) table per process per AUTH_CACHE_RECHECK_SECONDS. A per-hit
database check would close that last window too, at one query per API request: the cache
would be pointless. A version key in Redis would not help: when the delete cannot reach Redis,
neither can the version's update."""

import time

from django.conf import settings

from common import cache as safe

from .models import LostInvalidation

_synced_at: float | None = None  # never: a new process checks before trusting Redis


def invalidate(keys) -> None:
    """Delete authentication entries now; if Redis cannot be reached, record them so no process
    trusts them again before they are deleted."""
    keys = list(keys)
    if not keys or safe.delete_now(*keys):
        return
    LostInvalidation.objects.bulk_create(LostInvalidation(key=k) for k in keys)


def get(key: str):
    """The cached entry for `key`, or None (a miss) unless this process may trust Redis."""
    if not safe.redis_available() or not _in_sync():
        return None
    return safe.safe_get(key)


def _in_sync() -> bool:
    global _synced_at
    now = time.monotonic()
    if (
        _synced_at is not None
        and _synced_at > safe.last_error_at
        and now - _synced_at < settings.AUTH_CACHE_RECHECK_SECONDS
    ):
        return True
    lost = list(LostInvalidation.objects.values_list("id", "key")[:1000])
    if lost:
        if not safe.delete_now(*{key for _, key in lost}):
            return False
        LostInvalidation.objects.filter(id__in=[pk for pk, _ in lost]).delete()
        if len(lost) == 1000:  # more left: the next call goes on
            return False
    _synced_at = now
    return True


def reset(in_sync: bool = True) -> None:
    """Tests: a process that has just checked (True) or a new one (False)."""
    global _synced_at
    _synced_at = time.monotonic() if in_sync else None
