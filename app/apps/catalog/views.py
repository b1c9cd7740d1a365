from django.http import JsonResponse

from common.api import api_view

from . import selectors


@api_view(("GET",), auth=False)
def category_list(request):
    return JsonResponse({"results": selectors.active_categories()})
