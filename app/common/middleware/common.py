from django.middleware.common import CommonMiddleware

from common.api import json_error


class ApiCommonMiddleware(CommonMiddleware):
    """Django's CommonMiddleware, except that under /api/ a missing trailing slash is a JSON
    404 naming the right path instead of APPEND_SLASH's 301: clients replay a 301 as GET
    without the body (a POST /api/orders would silently become a list), and the API answers
    JSON only. Elsewhere (the admin) Django's redirect stays."""

    def process_response(self, request, response):
        if (
            response.status_code == 404
            and request.path_info.startswith("/api/")
            and self.should_redirect_with_slash(request)
        ):
            path = f"{request.path}/"
            return json_error(404, "not_found", f"no such resource; the path is {path}", path=path)
        return super().process_response(request, response)
