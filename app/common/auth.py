"""Bearer tokens authenticate the API views, and nothing else.

`Authorization: Bearer <token>` is read only where an API view asks for it (common/api.py's
api_view, as DRF's authentication classes do) and where the rate limiter keys an /api/ request
per user. It never sets request.user on the admin or any other session page: a token that
authenticated the whole site would open the admin (and its CSRF tokens) to anyone holding a
staff user's token."""

from apps.accounts.services import authenticate_token

NO_TOKEN = "send Authorization: Bearer <token>"


def token_user(request):
    """The user of the request's Bearer token, or None (request.token_error says why).

    Memoised on the request, so the rate limiter and the view share one look-up (one Redis GET
    warm). Sets request.api_user for the request log; never request.user."""
    try:
        return request._token_user
    except AttributeError:
        pass
    user, error = None, NO_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            error = "malformed Authorization header: use Bearer <token>"
        else:
            user = authenticate_token(token.strip())
            error = None if user is not None else "invalid or expired token"
    request._token_user, request.token_error = user, error
    if user is not None:
        request.api_user = user
    return user
