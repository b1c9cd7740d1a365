import socket

import pytest
from django.conf import settings
from django.test import override_settings


def closed_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_down():
    caches = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://:x@127.0.0.1:{closed_port()}/0",
        }
    }
    with override_settings(CACHES=caches):
        yield
