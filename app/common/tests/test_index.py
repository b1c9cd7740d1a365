import pytest
from django.test import Client, override_settings

from conftest import api_client

pytestmark = pytest.mark.django_db


def test_root_is_a_json_index(anon, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = anon.get("/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["name"] == "orders service"
    assert body["links"]["orders"] == "/api/orders/"
    assert body["links"]["healthz"] == "/healthz"
    for link in body["links"].values():
        assert anon.get(link).status_code in (200, 401)
    assert anon.head("/").status_code == 200


def test_root_other_methods_are_json_405(anon):
    response = Client(enforce_csrf_checks=True).post("/")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_root_checks_the_host(anon):
    client = api_client(HTTP_HOST="not-allowed.invalid")
    assert client.get("/").status_code == 400


@override_settings(RATE_LIMIT_ANON=(2, 60))
def test_root_is_rate_limited(anon):
    assert [anon.get("/").status_code for _ in range(3)] == [200, 200, 429]
