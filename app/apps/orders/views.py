from django.conf import settings
from django.http import HttpResponse, JsonResponse

from common.api import ApiError, api_view, ascii_uint, parse_json_object

from . import caching, selectors, services
from .serializers import order_data


def _positive_int_param(request, name: str, default: int, maximum: int) -> int:
    raw = request.GET.get(name)
    if raw is None:
        return default
    value = ascii_uint(raw)
    if value is None or not 0 < value <= maximum:
        raise ApiError(400, "invalid", f"{name} must be an integer from 1 to {maximum}", field=name)
    return value


@api_view(("GET", "POST"))
def order_list(request):
    if request.method == "POST":
        lines, address_id = services.validate_order_request(parse_json_object(request))
        order = services.create_order(
            user=request.user, lines=lines, shipping_address_id=address_id
        )
        order = selectors.order_for_user(request.user, order.id)
        return JsonResponse(order_data(order), status=201)

    size = _positive_int_param(
        request, "page_size", settings.ORDERS_PAGE_SIZE, settings.ORDERS_MAX_PAGE_SIZE
    )
    page = _positive_int_param(request, "page", 1, 10**6)
    orders = selectors.orders_for_user(request.user)
    count = orders.count()
    start = (page - 1) * size
    results = [order_data(o) for o in orders[start : start + size]] if start < count else []
    return JsonResponse(
        {
            "count": count,
            "page": page,
            "page_size": size,
            "next": page + 1 if start + size < count else None,
            "previous": page - 1 if page > 1 else None,
            "results": results,
        }
    )


@api_view(("GET",))
def order_detail(request, pk: int):
    return HttpResponse(
        caching.order_detail_json(request.user, pk), content_type="application/json"
    )
