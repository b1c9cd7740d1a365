"""Liveness, readiness and the benchmark ceiling. No secrets in any answer: the checks report
ok/error and the error's class name only (details go to the log)."""

import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from common import cache as safe
from common.api import json_error

logger = logging.getLogger("orders.health")


def _json(body: dict, status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


def livez(request):
    """The process answers. Touches nothing else."""
    return _json({"status": "ok", "release": settings.RELEASE})


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        logger.warning("healthz: database check failed", extra={"error": repr(exc)[:300]})
        # Drop a broken persistent connection so the next request reconnects.
        connection.close_if_unusable_or_obsolete()
        return "error"


def _check_redis() -> str:
    try:
        if safe.raw_client().ping():
            return "ok"
        return "error"
    except Exception as exc:  # noqa: BLE001
        logger.warning("healthz: redis check failed", extra={"error": type(exc).__name__})
        return "error"


def healthz(request):
    """Readiness: the database and Redis both answer."""
    checks = {"database": _check_database(), "redis": _check_redis()}
    ok = all(v == "ok" for v in checks.values())
    return _json(
        {"status": "ok" if ok else "error", "release": settings.RELEASE, "checks": checks},
        status=200 if ok else 503,
    )


_PONG = {"pong": True}


@csrf_exempt  # nothing to forge: GET/HEAD only, no session, no state
def ping(request):
    """Constant JSON, no database, no cache: the ceiling for benchmarks."""
    if request.method not in ("GET", "HEAD"):
        response = json_error(405, "method_not_allowed", "use GET, HEAD")
        response["Allow"] = "GET, HEAD"
        return response
    return JsonResponse(_PONG)
