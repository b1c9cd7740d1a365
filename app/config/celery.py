"""The Celery app: order confirmation e-mails are sent by a worker after the order's commit.

On the hosts (systemd units, one per role):
    <venv>/bin/celery -A config.celery worker --loglevel INFO --concurrency N
    <venv>/bin/celery -A config.celery beat --loglevel INFO --schedule /path/celerybeat-schedule
Both read the release's env file like gunicorn; the settings are Django's, the keys with the
CELERY_ prefix (config/settings/base.py, broker from CELERY_BROKER_URL in production.py)."""

import logging
import os

from celery import Celery
from celery.signals import setup_logging

# As config/wsgi.py: a worker serves production unless told otherwise.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

app = Celery("orders")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _keep_django_logging(loglevel=None, **kwargs):
    """Logging stays Django's LOGGING (JSON lines, common/logging.py), which the worker's
    django.setup() configures; a receiver of this signal stops Celery from adding its own
    plain-text handlers (worker_hijack_root_logger=False alone still gives its task loggers
    one). Only the level of `--loglevel` is applied."""
    if loglevel:
        logging.getLogger().setLevel(loglevel)
