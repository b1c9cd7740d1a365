"""WSGI entry point for gunicorn: `gunicorn config.wsgi:application`. Requests use the
pooled connection (DATABASE_URL, through PgBouncer)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

application = get_wsgi_application()
