import json
import threading

import pytest
from django.db import connections

from apps.accounts.services import create_token
from apps.catalog.models import Product
from apps.orders.models import Order, OrderItem
from conftest import api_client, make_product, make_user


def _run_in_threads(n, fn):
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_orders_never_oversell():
    product = make_product(stock=5)
    tokens = [create_token(make_user()) for _ in range(12)]

    def order(i):
        response = api_client(tokens[i]).post(
            "/api/orders/",
            data=json.dumps({"items": [{"product_id": product.pk, "quantity": 1}]}),
            content_type="application/json",
        )
        return response.status_code

    statuses = _run_in_threads(12, order)
    assert sorted(statuses) == [201] * 5 + [409] * 7
    product.refresh_from_db()
    assert product.stock == 0
    assert Order.objects.count() == 5
    assert sum(OrderItem.objects.values_list("quantity", flat=True)) == 5


@pytest.mark.django_db(transaction=True)
def test_overlapping_orders_in_opposite_order_do_not_deadlock():
    a, b, c = (make_product(stock=1000) for _ in range(3))
    tokens = [create_token(make_user()) for _ in range(8)]
    # Half list the products forwards, half backwards: the service locks in id order anyway.
    forwards = [a, b, c]

    def order(i):
        products = forwards if i % 2 else list(reversed(forwards))
        items = [{"product_id": p.pk, "quantity": 2} for p in products]
        return (
            api_client(tokens[i])
            .post(
                "/api/orders/", data=json.dumps({"items": items}), content_type="application/json"
            )
            .status_code
        )

    assert _run_in_threads(8, order) == [201] * 8
    assert list(Product.objects.order_by("id").values_list("stock", flat=True)) == [984] * 3
