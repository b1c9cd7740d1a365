import logging
import time

from django.conf import settings
from django.db import connection

logger = logging.getLogger("orders.request")


class RequestTimingMiddleware:
    """A Server-Timing header (only with settings.SERVER_TIMING) and one structured log line per
    request: method, path, status, duration, database time and query count, user id, client IP.
    Never bodies, never headers (so never Authorization), never the query string."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        db = {"count": 0, "seconds": 0.0}

        def count_queries(execute, sql, params, many, context):
            start = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                db["count"] += 1
                db["seconds"] += time.perf_counter() - start

        start = time.perf_counter()
        with connection.execute_wrapper(count_queries):
            response = self.get_response(request)
        total_ms = (time.perf_counter() - start) * 1000
        db_ms = db["seconds"] * 1000
        if settings.SERVER_TIMING:  # opt-in: it tells any client how long the database takes
            response["Server-Timing"] = f"app;dur={total_ms:.1f}, db;dur={db_ms:.1f}"

        # The token's user (set by common/auth.py on /api/), else a session user already loaded.
        user = getattr(request, "api_user", None) or getattr(request, "_cached_user", None)
        logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(total_ms, 2),
                "db_ms": round(db_ms, 2),
                "db_queries": db["count"],
                "user_id": getattr(user, "pk", None),
                "client_ip": getattr(request, "client_ip", None),
            },
        )
        return response
