"""The app's URLs plus a plain (not api_view, not CSRF-exempt) view under /api/."""

from django.http import JsonResponse
from django.urls import path

from config.urls import handler400, handler403, handler404, handler500  # noqa: F401
from config.urls import urlpatterns as app_urlpatterns


def plain(request):
    return JsonResponse({"ok": True})


urlpatterns = [path("api/plain/", plain), *app_urlpatterns]
