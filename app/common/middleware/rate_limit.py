import time

from django.conf import settings
from redis.exceptions import RedisError

from common import cache as safe
from common.api import json_error
from common.auth import token_user
from common.net import client_ip

# Fixed window, atomic: INCR and the window's EXPIRE happen in one script, so concurrent
# requests can neither lose counts nor leave a counter without a TTL.
_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


class RateLimitMiddleware:
    """Per user (a valid Bearer token on /api/) or per client IP; 429 with Retry-After over the
    limit.
    With Redis unreachable it fails open and logs it."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._script = None

    def _hit(self, key: str, window: int) -> tuple[int, int]:
        client = safe.raw_client()
        if self._script is None:
            self._script = client.register_script(_SCRIPT)
        count, ttl = self._script(keys=[key], args=[window], client=client)
        return int(count), int(ttl)

    def __call__(self, request):
        request.client_ip = client_ip(request)
        if request.path_info.startswith(settings.RATE_LIMIT_EXEMPT_PATHS):
            return self.get_response(request)

        # Per user only where a token can authenticate (the API); the look-up is memoised on
        # the request, so the view reuses it: no second Redis round trip.
        user = token_user(request) if request.path_info.startswith("/api/") else None
        if user is not None:
            limit, window = settings.RATE_LIMIT_USER
            subject = f"u:{user.pk}"
        else:
            limit, window = settings.RATE_LIMIT_ANON
            subject = f"ip:{request.client_ip}"
        bucket = int(time.time() // window)
        key = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:rl:{subject}:{bucket}"

        if not safe.redis_available():
            return self.get_response(request)
        try:
            count, ttl = self._hit(key, window)
        except (RedisError, OSError) as exc:
            # Fail open; mark_redis_down logs it (at most once per 10 s per process).
            safe.mark_redis_down(exc, "rate_limit (failing open)")
            return self.get_response(request)

        if count > limit:
            response = json_error(
                429,
                "rate_limited",
                f"more than {limit} requests in {window} s; retry after {ttl} s",
            )
            response["Retry-After"] = str(max(ttl, 1))
        else:
            response = self.get_response(request)
        response["X-RateLimit-Limit"] = str(limit)
        response["X-RateLimit-Remaining"] = str(max(limit - count, 0))
        return response
