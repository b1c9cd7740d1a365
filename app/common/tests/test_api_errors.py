"""Every error Django itself answers under /api/ is JSON with the error envelope; elsewhere
Django's own behaviour stays."""

import pytest
from django.conf import settings
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

PLAIN = override_settings(ROOT_URLCONF="common.tests.urls_plain_api")


def csrf_client(cookie=False):
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    if cookie:  # past the cookie check: the middleware then reads the form
        client.cookies[settings.CSRF_COOKIE_NAME] = "a" * 32
    return client


def assert_json_error(response, status, code):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code
    return response.json()["error"]


@PLAIN
def test_csrf_failure_under_api_is_json():
    assert_json_error(csrf_client().post("/api/plain/", {"a": 1}), 403, "csrf_failed")


def test_csrf_failure_elsewhere_is_django_page():
    response = csrf_client().post("/admin/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("method", ["post", "put", "delete", "options"])
def test_ping_other_methods_are_json_405(method):
    response = getattr(csrf_client(), method)("/api/ping/")
    assert_json_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD"
    assert csrf_client().head("/api/ping/").status_code == 200


@pytest.mark.parametrize("method", ["get", "post"])
def test_missing_slash_under_api_is_json_404_naming_the_path(api, method):
    if method == "post":
        response = api.post("/api/orders", data="{}", content_type="application/json")
    else:
        response = api.get("/api/orders")
    error = assert_json_error(response, 404, "not_found")
    assert error["path"] == "/api/orders/"
    assert "/api/orders/" in error["message"]
    assert_json_error(api.get("/api/orders/1"), 404, "not_found")
    assert_json_error(api.get("/api/ping"), 404, "not_found")


def test_missing_slash_elsewhere_still_redirects(admin_client):
    response = admin_client.get("/admin/catalog/product")
    assert response.status_code == 301
    assert response["Location"] == "/admin/catalog/product/"


@PLAIN
def test_body_too_large_for_a_plain_view_under_api_is_json_413():
    body = {"pad": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)}
    assert_json_error(csrf_client(cookie=True).post("/api/plain/", body), 413, "body_too_large")


@PLAIN
@override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=3)
def test_too_many_fields_under_api_is_json_400():
    body = {f"f{i}": "1" for i in range(10)}
    assert_json_error(csrf_client(cookie=True).post("/api/plain/", body), 400, "bad_request")


def test_disallowed_host_under_api_is_json_400():
    client = Client(HTTP_HOST="evil.invalid", raise_request_exception=False)
    assert_json_error(client.get("/api/categories/"), 400, "bad_request")


@override_settings(DISALLOWED_USER_AGENTS=[__import__("re").compile("badbot")])
def test_forbidden_user_agent_under_api_is_json_403():
    client = Client(HTTP_USER_AGENT="badbot/1", raise_request_exception=False)
    assert_json_error(client.get("/api/categories/"), 403, "forbidden")


def test_unknown_path_and_wrong_method_are_json(api):
    assert_json_error(api.get("/api/nope/"), 404, "not_found")
    assert_json_error(api.put("/api/orders/"), 405, "method_not_allowed")
