from common import health

_ROUTES = {"/livez": health.livez, "/healthz": health.healthz}


class HealthCheckMiddleware:
    """Serve /livez and /healthz before CommonMiddleware checks the Host header: deploy checks
    and load balancers reach the app over its local socket with whatever Host they have, and
    these answers carry nothing but ok/error and the release id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = _ROUTES.get(request.path_info)
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)
