from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Category
from .services import invalidate_categories


@receiver(post_save, sender=Category)
@receiver(post_delete, sender=Category)
def category_changed(sender, **kwargs):
    invalidate_categories()
