"""Django's error handlers (and CSRF_FAILURE_VIEW): JSON under /api/, Django's own pages
elsewhere (the admin).

handler500 also turns a lost database into 503 (Retry-After) instead of 500, and a write that
met a read-only server (a failover in progress): it runs inside Django's except block, so
sys.exc_info() still holds the exception."""

import sys

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.views import csrf, defaults

from common.api import json_error

DB_UNAVAILABLE = (OperationalError, InterfaceError)
# read_only_sql_transaction: a write reached a server that is (for a moment) a replica, as
# around a failover of a Patroni cluster: the database is unavailable for writes, not broken
READ_ONLY_SQLSTATE = "25006"


def _sqlstate(exc) -> str | None:
    """The SQLSTATE of a database error (Django's wrapper keeps the driver's as __cause__)."""
    return getattr(exc.__cause__, "sqlstate", None) or getattr(exc, "sqlstate", None)


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def bad_request(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        return json_error(413, "body_too_large", "request body is larger than the allowed size")
    if _is_api(request):
        return json_error(400, "bad_request", "the request could not be understood")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        return json_error(403, "forbidden", "you may not do this")
    return defaults.permission_denied(request, exception)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW. API views take a Bearer token and are CSRF-exempt: this answers an
    unsafe method sent to anything else under /api/."""
    if _is_api(request):
        return json_error(
            403, "csrf_failed", "CSRF check failed: this path takes no session-authenticated writes"
        )
    return csrf.csrf_failure(request, reason)


def page_not_found(request, exception=None):
    if _is_api(request):
        return json_error(404, "not_found", "no such resource")
    return defaults.page_not_found(request, exception)


def server_error(request):
    exc = sys.exc_info()[1]
    if isinstance(exc, DB_UNAVAILABLE) or (
        isinstance(exc, DatabaseError)
        and ("connection" in str(exc).lower() or _sqlstate(exc) == READ_ONLY_SQLSTATE)
    ):
        response = json_error(503, "unavailable", "the database is unavailable, retry shortly")
        response["Retry-After"] = "5"
        return response
    if _is_api(request):
        return json_error(500, "server_error", "internal error")
    return defaults.server_error(request)
