"""The order detail's response cache (apps/orders/caching.py): warm requests make no query,
every change to what the detail shows is seen on the next request, and a cached order is
served to its owner only."""

from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import override_settings

from apps.orders import caching
from apps.orders.models import Order, OrderItem
from conftest import api_client, make_address, make_order, make_product

pytestmark = pytest.mark.django_db


def detail(pk):
    return f"/api/orders/{pk}/"


@pytest.fixture
def order(user):
    return make_order(user, [make_product(), make_product()], address=make_address(user))


def get_twice(api, pk, django_assert_num_queries):
    """The first request builds the entry (the seed's two queries), the second is served by it."""
    api.get("/api/me/")  # the token look-up is cached too
    with django_assert_num_queries(2):
        first = api.get(detail(pk))
    with django_assert_num_queries(0):
        second = api.get(detail(pk))
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second["Content-Type"] == "application/json"
    return second.json()


def test_warm_detail_makes_no_query_and_answers_the_same(api, order, django_assert_num_queries):
    body = get_twice(api, order.pk, django_assert_num_queries)
    assert body["id"] == order.pk and len(body["items"]) == 2


def test_cached_order_is_404_for_another_user_like_a_missing_one(api, order, other_user):
    from apps.accounts.services import create_token

    assert api.get(detail(order.pk)).status_code == 200  # cached now
    mallory = api_client(create_token(other_user))
    response = mallory.get(detail(order.pk))
    missing = mallory.get(detail(order.pk + 1000))
    assert response.status_code == 404
    assert response.json() == missing.json()
    assert api.get(detail(order.pk)).status_code == 200  # the owner's entry is unharmed


def test_status_change_is_seen_next_request(
    api, order, django_assert_num_queries, django_capture_on_commit_callbacks
):
    get_twice(api, order.pk, django_assert_num_queries)
    with django_capture_on_commit_callbacks(execute=True):
        order.status = Order.Status.SHIPPED
        order.save()
    assert api.get(detail(order.pk)).json()["status"] == "shipped"


def test_item_added_or_removed_is_seen(api, order, django_capture_on_commit_callbacks):
    assert len(api.get(detail(order.pk)).json()["items"]) == 2
    with django_capture_on_commit_callbacks(execute=True):
        OrderItem.objects.create(
            order=order, product=make_product(), quantity=3, price=Decimal("1")
        )
    assert len(api.get(detail(order.pk)).json()["items"]) == 3
    with django_capture_on_commit_callbacks(execute=True):
        order.items.first().delete()
    assert len(api.get(detail(order.pk)).json()["items"]) == 2


def test_product_rename_is_seen(api, order, django_capture_on_commit_callbacks):
    assert api.get(detail(order.pk)).status_code == 200
    product = order.items.first().product
    with django_capture_on_commit_callbacks(execute=True):
        product.name = "Renamed"
        product.save()
    assert "Renamed" in [i["name"] for i in api.get(detail(order.pk)).json()["items"]]


def test_address_edit_is_seen(api, order, django_capture_on_commit_callbacks):
    assert api.get(detail(order.pk)).json()["shipping_address"]["city"] == "Town"
    with django_capture_on_commit_callbacks(execute=True):
        order.shipping_address.city = "Elsewhere"
        order.shipping_address.save()
    assert api.get(detail(order.pk)).json()["shipping_address"]["city"] == "Elsewhere"


def test_entry_built_from_rows_read_before_a_change_is_not_served(
    api, user, order, monkeypatch, django_assert_num_queries, django_capture_on_commit_callbacks
):
    """A reader reads the order, a writer changes it and replaces its version, then the reader
    stores what it read: the next reader must not be served that."""
    real_build = caching._build

    def build_then_concurrent_write(u, pk):
        body = real_build(u, pk)  # the old rows
        with django_capture_on_commit_callbacks(execute=True):
            Order.objects.filter(pk=pk).update(status=Order.Status.CANCELLED)
            caching.invalidate_orders([pk])  # what the writer's signal does, after the read
        return body

    monkeypatch.setattr(caching, "_build", build_then_concurrent_write)
    assert api.get(detail(order.pk)).json()["status"] == "pending"  # the racing reader
    monkeypatch.setattr(caching, "_build", real_build)
    with django_assert_num_queries(2):  # rebuilt, not served from the stale entry
        assert api.get(detail(order.pk)).json()["status"] == "cancelled"


@pytest.mark.parametrize(
    "version_key",
    [
        lambda order: caching._order_version_key(order.pk),
        lambda order: caching._user_version_key(order.user_id),
        lambda order: caching.CATALOG_VERSION_KEY,
    ],
    ids=["order", "user", "catalog"],
)
def test_lost_version_key_means_a_rebuild_not_a_stale_answer(
    api, order, version_key, django_assert_num_queries
):
    get_twice(api, order.pk, django_assert_num_queries)
    cache.delete(version_key(order))  # evicted (allkeys-lru) or expired
    with django_assert_num_queries(2):
        api.get(detail(order.pk))
    with django_assert_num_queries(0):  # the recreated version serves again
        api.get(detail(order.pk))


def test_change_then_evicted_version_shows_the_change(
    api, order, django_capture_on_commit_callbacks
):
    """The entry was built before any change (the order had no version key yet); the change's
    version is then evicted: the next request must show the change, not the old entry."""
    assert api.get(detail(order.pk)).json()["status"] == "pending"  # cached
    with django_capture_on_commit_callbacks(execute=True):
        order.status = Order.Status.SHIPPED
        order.save()
    cache.delete(caching._order_version_key(order.pk))
    assert api.get(detail(order.pk)).json()["status"] == "shipped"


def test_no_entry_is_stored_under_a_missing_version(api, order, monkeypatch):
    monkeypatch.setattr(caching.safe, "safe_add", lambda *args, **kwargs: False)
    assert api.get(detail(order.pk)).status_code == 200
    assert cache.get(caching._data_key(order.pk)) is None


def test_redis_down_detail_comes_from_the_database(
    api, order, redis_down, django_assert_num_queries
):
    for _ in range(2):
        # token look-up (user), then the two of the detail: nothing cached, nothing fails
        with django_assert_num_queries(3):
            response = api.get(detail(order.pk))
        assert response.status_code == 200


@override_settings(ORDER_DETAIL_CACHE_TIMEOUT=0)
def test_timeout_zero_turns_the_cache_off(api, order, django_assert_num_queries):
    api.get("/api/me/")
    for _ in range(2):
        with django_assert_num_queries(2):
            assert api.get(detail(order.pk)).status_code == 200
