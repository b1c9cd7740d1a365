from django.http import JsonResponse

from common.api import api_view


@api_view(("GET",))
def me(request):
    user = request.user
    return JsonResponse({"id": user.pk, "username": user.username, "email": user.email})
