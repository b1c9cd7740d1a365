from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import selectors, services
from .models import ApiToken


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def user_changed(sender, instance, created, **kwargs):
    # A deactivated user's tokens must stop working now, not when the cache entry expires.
    if not created:
        services.forget_tokens(selectors.token_hashes_for_user(instance.pk))


@receiver(post_save, sender=ApiToken)
@receiver(post_delete, sender=ApiToken)
def token_changed(sender, instance, **kwargs):
    services.forget_tokens([instance.key_hash])
