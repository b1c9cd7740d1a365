from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A Bearer token. Only its sha256 is stored; the token itself is shown once, at creation."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The first characters, to tell tokens apart in the admin without revealing them.
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.prefix}… ({self.user})"


class LostInvalidation(models.Model):
    """A cached authentication entry (token look-up, session) whose deletion could not reach
    Redis. Kept until a process has deleted the key from Redis (apps/accounts/authcache.py)."""

    key = models.CharField(max_length=250)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.key
