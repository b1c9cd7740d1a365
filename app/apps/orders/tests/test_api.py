import json
from decimal import Decimal

import pytest
from django.conf import settings

from apps.catalog.models import Product
from apps.orders.models import Order
from conftest import api_client, make_address, make_order, make_product

pytestmark = pytest.mark.django_db

LIST = "/api/orders/"


def detail(pk):
    return f"/api/orders/{pk}/"


def post(client, body, **kwargs):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    kwargs.setdefault("content_type", "application/json")
    return client.post(LIST, data=data, **kwargs)


def warm(client):
    """One request so the token look-up is cached: budgets below are for a warm cache."""
    assert client.get("/api/me/").status_code == 200


# --- query budgets: the count is the same with one row and with many ------------------------


@pytest.mark.parametrize("orders,items", [(1, 1), (25, 4)])
def test_list_query_budget(api, user, django_assert_num_queries, orders, items):
    products = [make_product() for _ in range(items)]
    for _ in range(orders):
        make_order(user, products, address=make_address(user))
    warm(api)
    # count + page of orders (with address) + items (with products)
    with django_assert_num_queries(3):
        response = api.get(LIST, {"page_size": 100})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == orders
    assert len(body["results"]) == orders
    assert all(len(o["items"]) == items for o in body["results"])


@pytest.mark.parametrize("items", [1, 30])
def test_detail_query_budget(api, user, django_assert_num_queries, items):
    order = make_order(user, [make_product() for _ in range(items)], address=make_address(user))
    warm(api)
    # The seed's two: order (joined with its address), items (joined with products).
    with django_assert_num_queries(2):
        response = api.get(detail(order.pk))
    assert response.status_code == 200
    assert len(response.json()["items"]) == items
    assert response.json()["shipping_address"]["city"] == "Town"


def test_list_is_paginated(api, user):
    for _ in range(5):
        make_order(user)
    body = api.get(LIST, {"page_size": 2, "page": 2}).json()
    assert (body["count"], body["page"], body["next"], body["previous"]) == (5, 2, 3, 1)
    assert len(body["results"]) == 2
    last = api.get(LIST, {"page_size": 2, "page": 3}).json()
    assert last["next"] is None and len(last["results"]) == 1
    assert api.get(LIST, {"page": 9}).json()["results"] == []


@pytest.mark.parametrize(
    "params", [{"page": "0"}, {"page": "x"}, {"page_size": "1000"}, {"page_size": "-1"}]
)
def test_bad_pagination_is_400(api, params):
    response = api.get(LIST, params)
    assert response.status_code == 400
    assert list(params)[0] in response.json()["error"]["message"]


# --- no IDOR --------------------------------------------------------------------------------


def test_other_users_order_is_404(api, other_user):
    theirs = make_order(other_user, [make_product()])
    response = api.get(detail(theirs.pk))
    assert response.status_code == 404
    missing = api.get(detail(theirs.pk + 1000))
    assert response.json() == missing.json()  # indistinguishable from a missing order


def test_list_shows_only_own_orders(api, user, other_user):
    mine = make_order(user)
    make_order(other_user)
    body = api.get(LIST).json()
    assert [o["id"] for o in body["results"]] == [mine.pk]


def test_other_users_address_is_refused(api, other_user):
    product = make_product(stock=5)
    response = post(
        api,
        {
            "items": [{"product_id": product.pk, "quantity": 1}],
            "shipping_address_id": make_address(other_user).pk,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_address"
    assert Order.objects.count() == 0


# --- creating orders ------------------------------------------------------------------------


def test_create_order_takes_stock(api, user):
    a = make_product(stock=10, price=Decimal("2.50"))
    b = make_product(stock=3, price=Decimal("10.00"))
    address = make_address(user)
    response = post(
        api,
        {
            "items": [{"product_id": a.pk, "quantity": 4}, {"product_id": b.pk, "quantity": 3}],
            "shipping_address_id": address.pk,
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["total"] == "40.00"
    assert body["status"] == "pending"
    assert {i["product_id"]: i["quantity"] for i in body["items"]} == {a.pk: 4, b.pk: 3}
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.stock, b.stock) == (6, 0)
    assert Order.objects.get(pk=body["id"]).user == user
    assert api.get(detail(body["id"])).status_code == 200


def test_insufficient_stock_is_409_and_changes_nothing(api):
    a = make_product(stock=10)
    b = make_product(stock=1)
    response = post(
        api, {"items": [{"product_id": a.pk, "quantity": 1}, {"product_id": b.pk, "quantity": 2}]}
    )
    assert response.status_code == 409
    assert response.json()["error"]["items"] == [
        {"product_id": b.pk, "requested": 2, "available": 1}
    ]
    assert list(Product.objects.order_by("id").values_list("stock", flat=True)) == [10, 1]
    assert Order.objects.count() == 0


def test_inactive_product_is_unknown(api):
    product = make_product(is_active=False)
    response = post(api, {"items": [{"product_id": product.pk, "quantity": 1}]})
    assert response.status_code == 400
    assert response.json()["error"]["product_ids"] == [product.pk]


# --- bad input: every case is a 4xx JSON error that says what is wrong, and changes nothing --

BAD_BODIES = [
    ("{not json", 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    ("[1, 2]", 400, "must be a JSON object"),
    ("null", 400, "must be a JSON object"),
    ({}, 400, "items is required"),
    ({"items": "abc"}, 400, "items must be a list"),
    ({"items": []}, 400, "items must not be empty"),
    ({"items": [1]}, 400, "items[0] must be an object"),
    ({"items": [{"quantity": 1}]}, 400, "items[0].product_id must be a positive integer"),
    ({"items": [{"product_id": "1", "quantity": 1}]}, 400, "product_id must be a positive"),
    ({"items": [{"product_id": True, "quantity": 1}]}, 400, "product_id must be a positive"),
    ({"items": [{"product_id": -3, "quantity": 1}]}, 400, "product_id must be a positive"),
    ({"items": [{"product_id": 2**70, "quantity": 1}]}, 400, "product_id must be a positive"),
    ({"items": [{"product_id": 1.5, "quantity": 1}]}, 400, "product_id must be a positive"),
    ({"items": [{"product_id": "P", "quantity": 0}]}, 400, "product_id must be a positive"),
    ({"items": [{"product_id": 1}]}, 400, "items[0].quantity must be a positive integer"),
    ({"items": [{"product_id": 1, "quantity": 0}]}, 400, "quantity must be a positive integer"),
    ({"items": [{"product_id": 1, "quantity": -2}]}, 400, "quantity must be a positive"),
    ({"items": [{"product_id": 1, "quantity": "2"}]}, 400, "quantity must be a positive"),
    ({"items": [{"product_id": 1, "quantity": 2.0}]}, 400, "quantity must be a positive"),
    ({"items": [{"product_id": 1, "quantity": 10**6}]}, 400, "quantity must be at most"),
    ({"items": [{"product_id": 1, "quantity": 1, "price": "0.01"}]}, 400, "unknown field"),
    ({"items": [{"product_id": 1, "quantity": 1}], "user_id": 2}, 400, "unknown field"),
    (
        {"items": [{"product_id": 1, "quantity": 1}], "shipping_address_id": "x"},
        400,
        "shipping_address_id must be",
    ),
    ({"items": [{"product_id": 1, "quantity": 1}] * 2}, 400, "appears twice"),
    ({"items": [{"product_id": i, "quantity": 1} for i in range(1, 60)]}, 400, "at most"),
    ({"items": [{"product_id": 987654, "quantity": 1}]}, 400, "unknown product(s): 987654"),
]


@pytest.mark.parametrize("body,status,message", BAD_BODIES)
def test_bad_order_input(api, body, status, message):
    product = make_product(stock=5)
    response = post(api, body)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert message in response.json()["error"]["message"]
    assert Order.objects.count() == 0
    product.refresh_from_db()
    assert product.stock == 5


def test_wrong_content_type_is_415(api):
    response = api.post(LIST, data="items=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


def test_oversized_body_is_413(api):
    body = json.dumps({"items": [], "pad": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    response = post(api, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_huge_id_in_url_is_404(api):
    response = api.get(detail(10**30))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_is_405(api, user):
    response = api.delete(detail(make_order(user).pk))
    assert response.status_code == 405
    assert response["Allow"] == "GET"


def test_requires_a_token(anon, user):
    for response in (anon.get(LIST), anon.get(detail(make_order(user).pk)), post(anon, {})):
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_bad_token_is_401_not_anonymous_access(user):
    response = api_client("ord_wrong").get(LIST)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid or expired token"


def test_unknown_api_path_is_json_404(api):
    response = api.get("/api/nope/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
