"""Hostile input is a JSON 400 (or 404) with the error envelope, never a 500."""

import json
from decimal import Decimal

import pytest

from apps.catalog.models import Product
from apps.orders.models import Order
from conftest import make_product

pytestmark = pytest.mark.django_db

LIST = "/api/orders/"


def post_raw(client, body: str | bytes):
    return client.post(LIST, data=body, content_type="application/json")


def assert_error(response, status=400, text=""):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] and error["message"]
    assert text in error["message"]
    return error


def item_body(product_id="1", quantity="1"):
    return f'{{"items": [{{"product_id": {product_id}, "quantity": {quantity}}}]}}'


HOSTILE_BODIES = [
    pytest.param("[" * 100_000, "nested too deeply", id="100k-open-brackets"),
    pytest.param('{"a":' * 100_000 + "1" + "}" * 100_000, "nested too deeply", id="100k-objects"),
    pytest.param("[" * 40 + "]" * 40, "nested too deeply", id="depth-40"),
    pytest.param(item_body("9" * 5000), "too many digits", id="5000-digit-int"),
    pytest.param(item_body(quantity="-" + "9" * 5000), "too many digits", id="negative-5000"),
    pytest.param(item_body("1e999999"), "out of range", id="1e999999"),
    pytest.param(item_body("-1e999999"), "out of range", id="-1e999999"),
    pytest.param(item_body("1" + "0" * 5000 + ".5"), "out of range", id="5000-digit-float"),
    pytest.param(item_body("NaN"), "not valid JSON", id="NaN"),
    pytest.param(item_body("Infinity"), "not valid JSON", id="Infinity"),
    pytest.param('{"items": [], "x\\u0000": 1}', "NUL", id="nul-in-key"),
    pytest.param('{"items": [{"product_id": "\\u0000"}]}', "NUL", id="nul-in-string"),
    pytest.param('{"items": [], "\\ud800": 1}', "surrogate", id="lone-surrogate-key"),
    pytest.param('{"items": ["\\udfff"]}', "surrogate", id="lone-surrogate-value"),
]


@pytest.mark.parametrize("body,text", HOSTILE_BODIES)
def test_hostile_json_is_400(api, body, text):
    product = make_product(stock=5)
    error = assert_error(post_raw(api, body), 400, text)
    assert error["code"] == "malformed_json"
    assert Order.objects.count() == 0
    product.refresh_from_db()
    assert product.stock == 5


@pytest.mark.parametrize(
    "params",
    [
        {"page": "²"},
        {"page": "١"},  # ARABIC-INDIC DIGIT ONE
        {"page_size": "٢٠"},
        {"page_size": "１０"},  # fullwidth
        {"page": "9" * 5000},
        {"page": " 1"},
        {"page": "1\n"},
    ],
)
def test_hostile_pagination_is_400(api, params):
    error = assert_error(api.get(LIST, params), 400, list(params)[0])
    assert error["field"] == list(params)[0]


@pytest.mark.parametrize(
    "path",
    [
        "/api/orders/99999999999999999999/",
        "/api/orders/" + "9" * 5000 + "/",
        "/api/orders/%00/",
        "/api/orders/1%00/",
        "/api/orders/%C2%B2/",  # ²
        "/api/orders/%D9%A1/",  # Arabic-Indic one
    ],
)
def test_hostile_path_is_json_404(api, path):
    error = assert_error(api.get(path), 404)
    assert error["code"] == "not_found"


def test_other_query_strings_are_ignored(api, anon):
    assert anon.get("/api/categories/", {"q": "²"}).status_code == 200
    # an encoded lone surrogate and a byte that is not UTF-8 at all
    assert api.get("/api/me/?x=%ED%A0%80&y=%FF").status_code == 200


def test_order_total_over_the_column_is_400(api):
    product = make_product(stock=5000, price=Decimal("99999999.99"))
    response = post_raw(api, json.dumps({"items": [{"product_id": product.pk, "quantity": 1000}]}))
    error = assert_error(response, 400, "9999999999.99")
    assert error["code"] == "total_too_large"
    assert Order.objects.count() == 0
    assert Product.objects.get(pk=product.pk).stock == 5000


def test_order_total_at_the_limit_is_accepted(api):
    product = make_product(stock=5000, price=Decimal("9999999.99"))
    response = post_raw(api, json.dumps({"items": [{"product_id": product.pk, "quantity": 1000}]}))
    assert response.status_code == 201, response.content
    assert response.json()["total"] == "9999999990.00"


@pytest.mark.parametrize("query", ["status=%00", "q=a%00b", "page=1%00", "page_size=%00"])
def test_nul_in_the_query_string_is_400_everywhere(admin_client, api, query):
    assert admin_client.get(f"/admin/orders/order/?{query}").status_code == 400
    assert_error(api.get(f"/api/orders/?{query}"), 400, "NUL")
