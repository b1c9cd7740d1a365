import itertools
import socket
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client, override_settings

from apps.accounts import authcache
from apps.accounts.services import create_token
from apps.catalog.models import Category, Product
from apps.orders.models import Order, OrderItem, ShippingAddress
from common import cache as safe_cache

_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_redis():
    """Every test starts with an empty Redis and no remembered Redis failure, in a process
    that has just checked for lost invalidations (apps/accounts/authcache.py)."""
    safe_cache.reset()
    authcache.reset()
    cache.clear()
    yield
    safe_cache.reset()
    authcache.reset()


def make_user(username=None, **kwargs):
    return get_user_model().objects.create_user(
        username=username or f"user{next(_seq)}", password="pw-not-used-123", **kwargs
    )


def make_category(**kwargs):
    n = next(_seq)
    kwargs.setdefault("name", f"Category {n}")
    kwargs.setdefault("slug", f"category-{n}")
    return Category.objects.create(**kwargs)


def make_product(category=None, **kwargs):
    n = next(_seq)
    kwargs.setdefault("sku", f"SKU-{n}")
    kwargs.setdefault("name", f"Product {n}")
    kwargs.setdefault("price", Decimal("9.99"))
    kwargs.setdefault("stock", 100)
    return Product.objects.create(category=category or make_category(), **kwargs)


def make_order(user, products=(), quantity=1, address=None):
    order = Order.objects.create(user=user, total=Decimal("0"), shipping_address=address)
    for product in products:
        OrderItem.objects.create(
            order=order, product=product, quantity=quantity, price=product.price
        )
    return order


def make_address(user):
    return ShippingAddress.objects.create(
        user=user,
        name="A Person",
        line1="1 Street",
        city="Town",
        postal_code="1000",
        country="DE",
    )


def api_client(token=None, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client(raise_request_exception=False, **headers, **extra)


@pytest.fixture
def user(db):
    return make_user("alice")


@pytest.fixture
def other_user(db):
    return make_user("mallory")


@pytest.fixture
def token(user):
    return create_token(user, name="test")


@pytest.fixture
def api(token):
    return api_client(token)


@pytest.fixture
def anon():
    return api_client()


def closed_port() -> int:
    """A port on 127.0.0.1 that nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_down():
    caches = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://:x@127.0.0.1:{closed_port()}/0",
        }
    }
    with override_settings(CACHES=caches):
        yield
