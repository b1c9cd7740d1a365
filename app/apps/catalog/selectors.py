from django.conf import settings

from common import cache as safe

from .models import Category, Product

CATEGORY_CACHE_KEY = "catalog:categories:v1"


def active_categories() -> list[dict]:
    """Active categories, from Redis when warm (no query), else one query. Invalidated by
    the Category signals; with Redis down every call is that one query."""
    result = safe.safe_get(CATEGORY_CACHE_KEY)
    if result is None:
        result = list(
            Category.objects.filter(is_active=True).order_by("name").values("id", "name", "slug")
        )
        safe.safe_set(CATEGORY_CACHE_KEY, result, settings.CATEGORY_CACHE_TIMEOUT)
    return result


def lock_products(product_ids) -> dict[int, Product]:
    """Active products by id, locked FOR UPDATE in id order (a fixed order, so two orders
    locking overlapping products cannot deadlock). Call inside transaction.atomic()."""
    products = (
        Product.objects.select_for_update()
        .filter(id__in=sorted(set(product_ids)), is_active=True)
        .only("id", "name", "price", "stock")
        .order_by("id")
    )
    return {p.id: p for p in products}
