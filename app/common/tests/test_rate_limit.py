import ipaddress
import logging
import threading

import pytest
from django.test import override_settings

from apps.accounts.services import create_token
from conftest import api_client, make_user

pytestmark = pytest.mark.django_db

URL = "/api/categories/"


@override_settings(RATE_LIMIT_ANON=(3, 60))
def test_anonymous_limit_per_ip(anon):
    statuses = [anon.get(URL).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = anon.get(URL)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["error"]["code"] == "rate_limited"
    assert response["X-RateLimit-Remaining"] == "0"
    # Another address has its own budget.
    assert api_client(REMOTE_ADDR="198.51.100.20").get(URL).status_code == 200


@override_settings(RATE_LIMIT_USER=(2, 60), RATE_LIMIT_ANON=(1000, 60))
def test_limit_is_per_user(user):
    a = api_client(create_token(user))
    b = api_client(create_token(make_user()))
    assert [a.get("/api/me/").status_code for _ in range(3)] == [200, 200, 429]
    assert b.get("/api/me/").status_code == 200


@override_settings(RATE_LIMIT_ANON=(2, 60), TRUSTED_PROXIES=(ipaddress.ip_network("127.0.0.0/8"),))
def test_forwarded_client_counts_behind_trusted_proxy():
    one = api_client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1")
    two = api_client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2")
    assert [one.get(URL).status_code for _ in range(3)] == [200, 200, 429]
    assert two.get(URL).status_code == 200


@override_settings(RATE_LIMIT_ANON=(2, 60), TRUSTED_PROXIES=())
def test_spoofed_forwarded_for_does_not_escape_the_limit():
    statuses = [
        api_client(REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
        .get(URL)
        .status_code
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]


@override_settings(RATE_LIMIT_ANON=(2, 60), TRUSTED_PROXIES=("unix",))
def test_unix_socket_peer_listed_as_trusted():
    one = api_client(REMOTE_ADDR="", HTTP_X_FORWARDED_FOR="198.51.100.1")
    two = api_client(REMOTE_ADDR="", HTTP_X_FORWARDED_FOR="198.51.100.2")
    assert [one.get(URL).status_code for _ in range(3)] == [200, 200, 429]
    assert two.get(URL).status_code == 200


@override_settings(RATE_LIMIT_ANON=(2, 60))
def test_health_and_ping_are_not_limited(anon):
    for path in ("/livez", "/healthz", "/api/ping/"):
        assert {anon.get(path).status_code for _ in range(4)} == {200}


@pytest.mark.django_db(transaction=True)
@override_settings(RATE_LIMIT_ANON=(25, 60))
def test_counter_is_atomic_under_concurrency():
    results = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker():
        client = api_client(REMOTE_ADDR="198.51.100.50")
        barrier.wait()
        codes = [client.get("/api/nothing-here/").status_code for _ in range(10)]
        with lock:
            results.extend(codes)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # 80 requests, limit 25: exactly 25 got through (to the 404), no count was lost.
    assert results.count(404) == 25
    assert results.count(429) == 55


@override_settings(RATE_LIMIT_ANON=(1, 60))
def test_redis_down_fails_open_and_logs(anon, redis_down, caplog):
    with caplog.at_level(logging.WARNING, logger="orders.cache"):
        statuses = [anon.get("/api/nothing-here/").status_code for _ in range(3)]
    assert statuses == [404, 404, 404]
    assert any("redis unavailable" in r.getMessage() for r in caplog.records)
    assert any("rate_limit" in getattr(r, "action", "") for r in caplog.records)
