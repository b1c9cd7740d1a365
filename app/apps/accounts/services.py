import hashlib
import hmac
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from common import cache as safe

from . import authcache, selectors
from .models import ApiToken

TOKEN_PREFIX = "ord_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _cache_key(key_hash: str) -> str:
    return f"auth:token:{key_hash}"


def create_token(user, name: str = "", token: str | None = None, expires_at=None) -> str:
    """Store a new token for `user` and return it: the only time it exists in clear."""
    token = token or TOKEN_PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=user,
        name=name,
        key_hash=hash_token(token),
        prefix=token[:12],
        expires_at=expires_at,
    )
    return token


def demo_token(seed: int, username: str) -> str:
    """A token derived from the demo seed, so docs and benchmarks can print a known one.
    Only ever used by load_demo_data."""
    digest = hmac.new(f"orders-demo-{seed}".encode(), username.encode(), "sha256").hexdigest()
    return f"{TOKEN_PREFIX}demo_{digest[:40]}"


_CACHED_USER_FIELDS = (
    "id",
    "username",
    "email",
    "first_name",
    "last_name",
    "is_active",
    "is_staff",
    "is_superuser",
)


def authenticate_token(token: str):
    """The active user for `token`, or None. Warm path: one Redis GET, no query."""
    if len(token) > 256:
        return None
    key_hash = hash_token(token)
    entry = authcache.get(_cache_key(key_hash))
    if entry is None:
        api_token = selectors.token_by_hash(key_hash)
        if api_token is None:
            return None
        user = api_token.user
        entry = {
            "user": {name: getattr(user, name) for name in _CACHED_USER_FIELDS},
            "expires_at": api_token.expires_at,
        }
        safe.safe_set(_cache_key(key_hash), entry, settings.TOKEN_CACHE_TIMEOUT)
    else:
        # Rebuilt as a deferred instance: the password hash never goes to Redis, and a field
        # not cached here would be loaded on access.
        model = get_user_model()
        names = [f.attname for f in model._meta.concrete_fields if f.attname in entry["user"]]
        user = model.from_db("default", names, [entry["user"][n] for n in names])
    expires_at = entry["expires_at"]
    if expires_at is not None and expires_at <= timezone.now():
        return None
    if not user.is_active:
        return None
    return user


def forget_tokens(key_hashes: list[str]) -> None:
    """Drop cached look-ups once the change is committed (a reader could otherwise re-cache
    the old row between the delete and the commit). Fails closed: authcache.py."""
    keys = [_cache_key(h) for h in key_hashes]
    transaction.on_commit(lambda: authcache.invalidate(keys))


def revoke_token(api_token: ApiToken) -> None:
    key_hash = api_token.key_hash
    api_token.delete()
    forget_tokens([key_hash])
