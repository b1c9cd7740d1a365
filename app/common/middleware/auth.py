from apps.accounts.services import authenticate_token


class BearerTokenMiddleware:
    """`Authorization: Bearer <token>` authenticates API requests. The token is looked up by
    its sha256 (tokens are stored hashed), through a Redis cache so a warm request costs no
    query. Sets request.auth_method = "token" and request.user; a bad token leaves the request
    anonymous with request.auth_error explaining why (the API answers 401)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.auth_method = None
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                request.auth_error = "malformed Authorization header: use Bearer <token>"
            else:
                user = authenticate_token(token.strip())
                if user is None:
                    request.auth_error = "invalid or expired token"
                else:
                    request.user = request.api_user = user
                    request.auth_method = "token"
        return self.get_response(request)
