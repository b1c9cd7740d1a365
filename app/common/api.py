"""Small helpers that keep the JSON views thin: errors, body parsing, authentication."""

import json
from functools import wraps

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from common.auth import token_user


class ApiError(Exception):
    """Raised by services and parsers; rendered as {"error": {"code", "message", ...}}."""

    def __init__(self, status: int, code: str, message: str, **details):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def json_error(status: int, code: str, message: str, **details) -> JsonResponse:
    body = {"error": {"code": code, "message": message, **details}}
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


def parse_json_object(request) -> dict:
    """The request body as a JSON object, or an ApiError saying what is wrong with it."""
    content_type = request.content_type or ""
    if content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        raw = request.body
    except RequestDataTooBig as exc:
        raise ApiError(
            413, "body_too_large", "request body is larger than the allowed size"
        ) from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "invalid", "body must be a JSON object")
    return data


def api_view(methods: tuple[str, ...], auth: bool = True):
    """JSON endpoint: only `methods`; with auth, only a valid Bearer token authenticates (the
    session cookie never does, which is why CSRF does not apply to these views). The token is
    checked here, per view, not by a middleware: it must not log anyone into the admin."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                response = json_error(405, "method_not_allowed", f"use {', '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            if auth:
                user = token_user(request)
                if user is None:
                    response = json_error(401, "unauthenticated", request.token_error)
                    response["WWW-Authenticate"] = 'Bearer realm="orders"'
                    return response
                # Only here, inside an API view: the session never authenticates the API,
                # and a token never authenticates anything else (common/auth.py).
                request.user = user
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return json_error(exc.status, exc.code, exc.message, **exc.details)

        return csrf_exempt(wrapper)

    return decorator
