"""Cached order details follow every change to what they show (caching.py)."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.catalog.models import Product

from . import caching
from .models import Order, OrderItem, ShippingAddress


@receiver(post_save, sender=Order)
@receiver(post_delete, sender=Order)
def order_changed(sender, instance, created=False, **kwargs):
    if not created:  # a new order has nothing cached yet (a 404 is never cached)
        caching.invalidate_orders([instance.pk])


@receiver(post_save, sender=OrderItem)
@receiver(post_delete, sender=OrderItem)
def order_item_changed(sender, instance, **kwargs):
    caching.invalidate_orders([instance.order_id])


# An address is shown by its user's orders; deleting it sets theirs to NULL without signals.
@receiver(post_save, sender=ShippingAddress)
@receiver(post_delete, sender=ShippingAddress)
def address_changed(sender, instance, **kwargs):
    caching.invalidate_user(instance.user_id)


@receiver(post_save, sender=Product)
@receiver(post_delete, sender=Product)
def product_changed(sender, instance, **kwargs):
    caching.invalidate_catalog()
