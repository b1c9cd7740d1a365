import time
from unittest import mock

import pytest
from django.db import OperationalError, connection

from conftest import api_client, closed_port, make_category, make_order, make_product

pytestmark = pytest.mark.django_db


def test_livez(anon):
    response = anon.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "release": "test-release"}


def test_healthz_ok(anon):
    response = anon.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "release": "test-release",
        "checks": {"database": "ok", "redis": "ok"},
    }
    assert response["Cache-Control"] == "no-store"


def test_health_answers_any_host_header():
    # Deploy checks reach the app over its local socket with whatever Host they send.
    client = api_client(HTTP_HOST="not-an-allowed-host.invalid")
    assert client.get("/livez").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/ping/").status_code == 400


def test_ping_is_constant_and_queries_nothing(anon, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = anon.get("/api/ping/")
    assert response.json() == {"pong": True}


def test_healthz_redis_down(anon, redis_down):
    start = time.monotonic()
    response = anon.get("/healthz")
    assert time.monotonic() - start < 1.0
    assert response.status_code == 503
    body = response.json()
    assert body["checks"] == {"database": "ok", "redis": "error"}
    assert body["release"] == "test-release"
    assert "redis://" not in response.content.decode()


def test_redis_down_pages_still_work(user, token, redis_down):
    make_category(name="Books", slug="books")
    order = make_order(user, [make_product()])
    client = api_client(token)
    start = time.monotonic()
    categories = client.get("/api/categories/")
    detail = client.get(f"/api/orders/{order.pk}/")
    listing = client.get("/api/orders/")
    assert time.monotonic() - start < 2.0  # misses cost milliseconds, not seconds
    assert categories.status_code == 200
    assert categories.json()["results"][0]["slug"] == "books"
    assert detail.status_code == 200 and listing.status_code == 200


def test_redis_down_admin_session_still_works(admin_user, redis_down):
    client = api_client()
    client.force_login(admin_user)  # session written to the DB; the cache write is dropped
    response = client.get("/admin/")
    assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_healthz_database_down():
    """A real failed connection: the default connection pointed at a closed port."""
    connection.close()
    saved = dict(connection.settings_dict)
    connection.settings_dict["PORT"] = str(closed_port())
    connection.settings_dict["OPTIONS"] = {**saved.get("OPTIONS", {}), "connect_timeout": 2}
    try:
        client = api_client()
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.json()["checks"] == {"database": "error", "redis": "ok"}
        assert client.get("/livez").status_code == 200
        # A page that needs the database: 503 with Retry-After, never 500.
        outage = client.get("/api/categories/")
        assert outage.status_code == 503
        assert outage["Retry-After"] == "5"
        assert outage.json()["error"]["code"] == "unavailable"
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert api_client().get("/healthz").status_code == 200


def test_unexpected_error_is_json_500_on_api(api):
    with mock.patch("apps.orders.views.selectors.orders_for_user", side_effect=RuntimeError):
        response = api.get("/api/orders/")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "server_error", "message": "internal error"}}


def test_database_error_during_request_is_503(api):
    with mock.patch(
        "apps.orders.views.selectors.orders_for_user",
        side_effect=OperationalError("server closed the connection unexpectedly"),
    ):
        response = api.get("/api/orders/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"


@pytest.mark.django_db(transaction=True)
def test_write_to_a_read_only_server_is_503(token):
    """A real read-only session (as a replica's, around a failover): the order POST is refused
    by PostgreSQL (SQLSTATE 25006) and the client gets 503 with Retry-After, not 500."""
    api, product = api_client(token), make_product()
    with connection.cursor() as cursor:
        cursor.execute("SET default_transaction_read_only = on")
    try:
        response = api.post(
            "/api/orders/",
            data={"items": [{"product_id": product.id, "quantity": 1}]},
            content_type="application/json",
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET default_transaction_read_only = off")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "unavailable"


def test_admin_pages_keep_html_errors(client):
    response = client.get("/admin-nope/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_server_timing_header(anon):
    response = anon.get("/api/categories/")
    assert response["Server-Timing"].startswith("app;dur=")
    assert "db;dur=" in response["Server-Timing"]
