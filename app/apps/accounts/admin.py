from django.contrib import admin

from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """List and revoke tokens; create them with `orders-manage create_api_token USER`."""

    list_display = ("prefix", "user", "name", "created_at", "expires_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "name", "prefix")
    # The owner is fixed at creation: staff who may change tokens must not be able to move
    # one onto another user (a superuser, say) and then use it.
    readonly_fields = ("user", "prefix", "created_at")
    fields = ("user", "name", "prefix", "created_at", "expires_at")

    def has_add_permission(self, request):
        return False
