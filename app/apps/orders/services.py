from decimal import Decimal

from django.conf import settings
from django.db import transaction

from apps.catalog.models import Product
from apps.catalog.selectors import lock_products
from common.api import ApiError

from . import selectors, tasks
from .models import Order, OrderItem

MAX_ID = 2**63 - 1
# The largest total numeric(12,2) holds: checked here, or PostgreSQL's DataError is a 500.
_total = Order._meta.get_field("total")
MAX_TOTAL = Decimal(10 ** (_total.max_digits - _total.decimal_places)) - Decimal(1).scaleb(
    -_total.decimal_places
)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_order_request(data: dict) -> tuple[dict[int, int], int | None]:
    """{product_id: quantity} and the address id, or an ApiError naming the bad field."""
    unknown = sorted(set(data) - {"items", "shipping_address_id"})
    if unknown:
        raise ApiError(400, "invalid", f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    items = data.get("items")
    if items is None:
        raise ApiError(400, "invalid", "items is required", field="items")
    if not isinstance(items, list):
        raise ApiError(400, "invalid", "items must be a list", field="items")
    if not items:
        raise ApiError(400, "invalid", "items must not be empty", field="items")
    if len(items) > settings.ORDER_MAX_LINES:
        raise ApiError(
            400, "invalid", f"at most {settings.ORDER_MAX_LINES} items per order", field="items"
        )
    lines: dict[int, int] = {}
    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            raise ApiError(400, "invalid", f"{where} must be an object", field=where)
        extra = sorted(set(item) - {"product_id", "quantity"})
        if extra:
            raise ApiError(
                400, "invalid", f"{where}: unknown field(s) {', '.join(extra)}", field=where
            )
        product_id, quantity = item.get("product_id"), item.get("quantity")
        if not _is_int(product_id) or not 0 < product_id <= MAX_ID:
            raise ApiError(
                400,
                "invalid",
                f"{where}.product_id must be a positive integer",
                field=f"{where}.product_id",
            )
        if not _is_int(quantity) or quantity <= 0:
            raise ApiError(
                400,
                "invalid",
                f"{where}.quantity must be a positive integer",
                field=f"{where}.quantity",
            )
        if quantity > settings.ORDER_MAX_QUANTITY:
            raise ApiError(
                400,
                "invalid",
                f"{where}.quantity must be at most {settings.ORDER_MAX_QUANTITY}",
                field=f"{where}.quantity",
            )
        if product_id in lines:
            raise ApiError(
                400,
                "invalid",
                f"{where}.product_id {product_id} appears twice",
                field=f"{where}.product_id",
            )
        lines[product_id] = quantity
    address_id = data.get("shipping_address_id")
    if address_id is not None and (not _is_int(address_id) or not 0 < address_id <= MAX_ID):
        raise ApiError(
            400,
            "invalid",
            "shipping_address_id must be a positive integer or null",
            field="shipping_address_id",
        )
    return lines, address_id


@transaction.atomic
def create_order(*, user, lines: dict[int, int], shipping_address_id: int | None = None) -> Order:
    """Create an order and take its stock, all or nothing. The products' rows are locked (in
    id order) for the length of the transaction, so concurrent orders queue on the rows they
    share and stock can never go negative. After the commit, the order's confirmation e-mail
    is queued (tasks.py)."""
    address = None
    if shipping_address_id is not None:
        address = selectors.address_for_user(user, shipping_address_id)
        if address is None:
            raise ApiError(
                400,
                "unknown_address",
                f"no shipping address {shipping_address_id}",
                field="shipping_address_id",
            )
    products = lock_products(lines)
    missing = sorted(set(lines) - set(products))
    if missing:
        raise ApiError(
            400,
            "unknown_products",
            f"unknown product(s): {', '.join(map(str, missing))}",
            product_ids=missing,
        )
    short = [
        {"product_id": pid, "requested": qty, "available": products[pid].stock}
        for pid, qty in lines.items()
        if products[pid].stock < qty
    ]
    if short:
        raise ApiError(409, "insufficient_stock", "not enough stock", items=short)

    total = sum((products[pid].price * qty for pid, qty in lines.items()), Decimal("0"))
    if total > MAX_TOTAL:
        raise ApiError(
            400,
            "total_too_large",
            f"the order total {total} is over the limit of {MAX_TOTAL}: split the order",
            limit=str(MAX_TOTAL),
        )
    for pid, qty in lines.items():
        products[pid].stock -= qty
    Product.objects.bulk_update(list(products.values()), ["stock"])
    order = Order.objects.create(user=user, shipping_address=address, total=total)
    OrderItem.objects.bulk_create(
        OrderItem(order=order, product=products[pid], quantity=qty, price=products[pid].price)
        for pid, qty in lines.items()
    )
    # The confirmation e-mail is queued only once the order is committed (a worker could not see
    # it before, and a rolled-back order gets none), by the outermost transaction's commit if
    # create_order runs inside another one. enqueue_confirmation never raises for a broker that
    # is away; robust=True also keeps anything unexpected from turning the response of an order
    # that is already committed into a 500 (Django logs it instead).
    order_id = order.id
    transaction.on_commit(lambda: tasks.enqueue_confirmation(order_id), robust=True)
    return order
