import json
import logging

import pytest

from common.logging import JsonFormatter

pytestmark = pytest.mark.django_db


def test_request_log_line(api, user, token, caplog):
    with caplog.at_level(logging.INFO, logger="orders.request"):
        api.post("/api/orders/?secret=1", data='{"items": "abc"}', content_type="application/json")
    record = next(r for r in caplog.records if r.name == "orders.request")
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["msg"] == "request"
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/api/orders/", 400)
    assert entry["user_id"] == user.pk
    assert entry["duration_ms"] >= 0 and entry["client_ip"] == "127.0.0.1"
    # Never the body, the query string or the Authorization header.
    assert token not in line and "abc" not in line and "secret" not in line


@pytest.mark.parametrize("path", ["/api/categories/", "/api/ping/", "/admin/login/", "/"])
def test_no_server_timing_unless_turned_on(anon, settings, path):
    settings.SERVER_TIMING = False
    assert "Server-Timing" not in anon.get(path)
    settings.SERVER_TIMING = True
    assert anon.get(path)["Server-Timing"].startswith("app;dur=")
