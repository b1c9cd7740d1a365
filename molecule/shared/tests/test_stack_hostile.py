"""A hostile API client through nginx, from the control node: a token never opens the admin,
and every malformed request gets a JSON 4xx in the error envelope, never a 500 or an HTML page.
(The app's own tests cover each case in depth; these prove it on the deployed stack.)"""

import json

import pytest
from test_stack_web import _app_host, _in_stock_product, _token, curl, parse, site, values  # noqa: F401

from conftest import need

STAFF = "auditstaff"


@pytest.fixture(scope="module")
def app(host):
    need(host, "web")
    return _app_host(host)


@pytest.fixture(scope="module")
def staff_token(app):
    app.check_output(
        "orders-manage shell -c \"from django.contrib.auth import get_user_model; "
        f"u, _ = get_user_model().objects.get_or_create(username='{STAFF}'); "
        "u.is_staff = u.is_superuser = True; u.set_unusable_password(); u.save()\"")
    return _token(app, STAFF)


def test_root_page_answers_for_scanners_and_load_balancers(site):  # noqa: F811
    status, headers, body = parse(curl(site, "/").stdout)
    assert status == 200, body[:300]
    assert values(headers, "content-type") == ["application/json"]
    assert json.loads(body)


def test_a_staff_token_does_not_open_the_admin(site, staff_token):  # noqa: F811
    auth = ["-H", f"Authorization: Bearer {staff_token}"]
    status, headers, body = parse(curl(site, "/admin/", *auth).stdout)
    assert status == 302 and values(headers, "location")[0].startswith("/admin/login/"), (status, body[:200])
    assert "Site administration" not in body
    # the API still takes the same token
    status, _, body = parse(curl(site, "/api/me/", *auth).stdout)
    assert status == 200 and json.loads(body)["username"] == STAFF


@pytest.fixture(scope="module")
def token(app):
    return _token(app, "demo0004")


NESTED = "[" * 50_000 + "]" * 50_000  # one argument of curl: under 128 KiB


@pytest.mark.parametrize(("what", "request_line", "body"), [
    ("deeply nested JSON", ("POST", "/api/orders/"), NESTED),
    ("a number of 5,000 digits", ("POST", "/api/orders/"), '{"items": [{"product_id": 1' + "0" * 5000 + ', "quantity": 1}]}'),
    ("non-ASCII digits in ?page=", ("GET", "/api/orders/?page=%C2%B2"), None),
    ("Arabic-Indic digits in ?page_size=", ("GET", "/api/orders/?page_size=%D9%A3"), None),
    ("an id past bigint in the path", ("GET", "/api/orders/99999999999999999999999/"), None),
    ("NUL inside a JSON string", ("POST", "/api/orders/"), '{"items": "\\u0000"}'),
    ("POST without the trailing slash", ("POST", "/api/orders"), "{}"),
    ("a POST to a view that is not an API view", ("POST", "/api/ping/"), "{}"),
])
def test_hostile_input_gets_a_json_4xx(site, token, what, request_line, body):  # noqa: F811
    method, path = request_line
    args = ["-X", method, "-H", f"Authorization: Bearer {token}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", body]
    status, headers, answer = parse(curl(site, path, *args).stdout)
    assert 400 <= status < 500, f"{what}: {status} {answer[:300]}"
    assert values(headers, "content-type") == ["application/json"], f"{what}: {answer[:300]}"
    assert set(json.loads(answer)["error"]) >= {"code", "message"}, answer[:300]


def test_an_order_total_past_the_database_column_is_refused(site, app, token):  # noqa: F811
    """numeric(12,2) holds less than 10^10: a product at the top of its price column, ordered
    1,000 times, is refused with a 400 before the database could answer DataError (a 500)."""
    product = _in_stock_product(app)
    shell = "orders-manage shell -c \"from apps.catalog.models import Product; {}\""
    before = app.check_output(shell.format(
        f"p = Product.objects.get(pk={product}); print(p.price, p.stock)")).splitlines()[-1].split()
    app.check_output(shell.format(f"Product.objects.filter(pk={product}).update(price='99999999.99', stock=100000)"))
    try:
        body = json.dumps({"items": [{"product_id": product, "quantity": 1000}]})
        status, headers, answer = parse(curl(site, "/api/orders/", "-H", f"Authorization: Bearer {token}",
                                             "-H", "Content-Type: application/json", "--data", body).stdout)
        assert status == 400, answer[:300]
        assert values(headers, "content-type") == ["application/json"]
    finally:
        app.check_output(shell.format(
            f"Product.objects.filter(pk={product}).update(price='{before[0]}', stock={before[1]})"))
