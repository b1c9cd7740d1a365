from django.db.models import Prefetch
from django.shortcuts import get_object_or_404

from .models import Order, OrderItem, ShippingAddress


def _with_items(queryset):
    # One query for the items and their products, however many orders: no N+1.
    items = OrderItem.objects.select_related("product").only(
        "id", "order_id", "quantity", "price", "product__id", "product__name", "product__sku"
    )
    return queryset.select_related("shipping_address").prefetch_related(
        Prefetch("items", queryset=items)
    )


def orders_for_user(user):
    """The user's orders, newest first. Always filtered by owner."""
    return _with_items(Order.objects.filter(user=user)).order_by("-created_at", "-id")


def order_for_user(user, order_id: int) -> Order:
    """Two queries. Another user's order is a 404, indistinguishable from a missing one."""
    return get_object_or_404(_with_items(Order.objects.all()), pk=order_id, user=user)


def address_for_user(user, address_id: int) -> ShippingAddress | None:
    return ShippingAddress.objects.filter(pk=address_id, user=user).first()
