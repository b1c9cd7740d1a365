"""Orders as JSON-ready dicts (plain functions; no DRF)."""


def address_data(address) -> dict | None:
    if address is None:
        return None
    return {
        "id": address.id,
        "name": address.name,
        "line1": address.line1,
        "line2": address.line2,
        "city": address.city,
        "postal_code": address.postal_code,
        "country": address.country,
    }


def order_data(order) -> dict:
    return {
        "id": order.id,
        "status": order.status,
        "total": str(order.total),
        "created_at": order.created_at.isoformat(),
        "shipping_address": address_data(order.shipping_address),
        "items": [
            {
                "product_id": item.product_id,
                "sku": item.product.sku,
                "name": item.product.name,
                "quantity": item.quantity,
                "price": str(item.price),
            }
            for item in order.items.all()
        ],
    }
