"""`/`: a small JSON index of the API, so that `/` answers (scanners such as the HTTP
Observatory give up on a site whose root is a 404). Constant, no database, no cache."""

from django.http import JsonResponse
from django.urls import reverse

from common.api import api_view


@api_view(("GET", "HEAD"), auth=False)
def index(request):
    links = {
        "categories": reverse("category-list"),
        "orders": reverse("order-list"),
        "me": reverse("me"),
        "ping": reverse("ping"),
        "livez": reverse("livez"),
        "healthz": reverse("healthz"),
    }
    return JsonResponse(
        {
            "name": "orders service",
            "authentication": "Authorization: Bearer <token> (orders, me)",
            "links": links,
        }
    )
