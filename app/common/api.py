"""Small helpers that keep the JSON views thin: errors, body parsing, authentication."""

import json
import math
import re
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


# Bounds on what a body may hold. Python's json accepts numbers of any size (int() then fails
# past 4300 digits, floats overflow to inf), nesting until the interpreter's recursion limit,
# NUL (which PostgreSQL refuses in text) and lone surrogates (which cannot be encoded back).
MAX_JSON_DEPTH = 32
MAX_JSON_DIGITS = 64
_ASCII_UINT = re.compile(r"[0-9]{1,18}")


def _malformed(message: str) -> ApiError:
    return ApiError(400, "malformed_json", f"body is not valid JSON: {message}")


def _json_int(text: str) -> int:
    if len(text) > MAX_JSON_DIGITS:
        raise _malformed(f"a number has too many digits (at most {MAX_JSON_DIGITS})")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _malformed("a number is out of range")
    return value


def _json_constant(name: str):
    raise _malformed(f"{name} is not valid JSON")


def _check_tree(data) -> None:
    """Depth, NUL and lone surrogates, without recursion (the tree may be deep)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            children = value
        else:
            if isinstance(value, str):
                if "\x00" in value:
                    raise _malformed("strings must not contain NUL (\\u0000)")
                if not value.isascii():
                    try:
                        value.encode()
                    except UnicodeEncodeError as exc:
                        raise _malformed("a string holds a lone surrogate") from exc
            continue
        if depth > MAX_JSON_DEPTH:
            raise _malformed(f"nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        stack.extend((child, depth + 1) for child in children)


def ascii_uint(raw: str) -> int | None:
    """A query-string number: ASCII digits only (str.isdigit() also takes '²' and other
    scripts' digits, which int() then reads or refuses), at most 18 of them; else None."""
    return int(raw) if _ASCII_UINT.fullmatch(raw) else None


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
        data = json.loads(
            raw, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _malformed(str(exc)) from exc
    except RecursionError as exc:
        raise _malformed(f"nested too deeply (at most {MAX_JSON_DEPTH} levels)") from exc
    _check_tree(data)
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
