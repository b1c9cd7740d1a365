from django.conf import settings
from django.db import models


class ShippingAddress(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="addresses"
    )
    name = models.CharField(max_length=200)
    line1 = models.CharField(max_length=200)
    line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100)
    postal_code = models.CharField(max_length=20)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")

    class Meta:
        verbose_name_plural = "shipping addresses"

    def __str__(self):
        return f"{self.name}, {self.city}"


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        SHIPPED = "shipped", "Shipped"
        DELIVERED = "delivered", "Delivered"
        CANCELLED = "cancelled", "Cancelled"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    shipping_address = models.ForeignKey(
        ShippingAddress, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    total = models.DecimalField(max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # When the SMTP server accepted the order confirmation e-mail (apps/orders/tasks.py); NULL
    # while it is owed. Nullable and without a default: adding it rewrites no row, and the
    # previous release, which never writes it, keeps working on the new schema.
    confirmation_sent_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "status"], name="idx_order_user_status"),
            models.Index(fields=["-created_at"], name="idx_order_created_at_desc"),
            # Serves the API's list: one user's orders, newest first.
            models.Index(fields=["user", "-created_at"], name="idx_order_user_created"),
            # The periodic sweep's query (tasks.send_pending_confirmations): orders still owed a
            # confirmation, oldest first. Partial, so it holds only those.
            models.Index(
                fields=["created_at"],
                name="idx_order_confirmation_due",
                condition=models.Q(confirmation_sent_at__isnull=True),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(total__gte=0), name="order_total_gte_0"),
        ]

    def __str__(self):
        return f"Order #{self.pk} ({self.status})"


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    # The unit price when ordered: later price changes don't rewrite history.
    price = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="positive_quantity"),
        ]

    def __str__(self):
        return f"{self.quantity} × {self.product_id}"
