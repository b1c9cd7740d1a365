from django.core.exceptions import BadRequest

from common.api import json_error


class RejectNulQueryMiddleware:
    """A NUL in the query string is a 400 for every view: PostgreSQL refuses NUL in text, so a
    parameter that reaches a query (an admin list filter, say) would otherwise be a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        if "%00" in query or "\x00" in query:
            if request.path_info.startswith("/api/"):
                return json_error(400, "bad_request", "NUL (%00) is not allowed in the query")
            raise BadRequest("NUL in the query string")  # Django's 400 page
        return self.get_response(request)
