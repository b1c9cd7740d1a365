import logging
import os

from django.contrib import admin, messages
from django.http import HttpResponseRedirect

from .models import Category, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_active")
    prepopulated_fields = {"slug": ("name",)}


log = logging.getLogger(__name__)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "sku", "category", "price", "stock", "is_active")
    list_filter = ("is_active", "category")
    list_select_related = ("category",)
    search_fields = ("name", "sku")

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        """A media volume that is full or read-only fails the upload with a clear message.

        The storage raises OSError while the product is saved; the admin's transaction rolls the
        row back, so nothing is half-saved. Without this the upload would be a 500.
        """
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except OSError as exc:
            log.error("product image upload failed: %s", exc)
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            self.message_user(
                request,
                f"The image could not be stored ({reason}); nothing was saved. "
                "The media storage needs attention (free space, or write access).",
                level=messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())
