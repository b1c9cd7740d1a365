"""URLs of the benchmark's baseline (config.settings.baseline): the app's URLs plus /static/
served by Django itself, as a deployment without a web server for static files would.
`django.conf.urls.static.static()` only works with DEBUG on, so the view is wired directly."""

from django.conf import settings
from django.urls import re_path
from django.views.static import serve

from .urls import handler400, handler403, handler404, handler500  # noqa: F401
from .urls import urlpatterns as app_urlpatterns

urlpatterns = [
    re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT}),
    *app_urlpatterns,
]
