"""The order detail's JSON, cached in Redis per order (docs/benchmarks.md).

A warm detail costs one Redis round trip (MGET) and no query. An entry holds the owner's id,
the response body and the versions it was built under; it is served only while all of them are
still current, and only to its owner (anyone else gets the same 404 as for a missing order, as
the selector gives).

What the detail shows has three sources, each with a version key that a change replaces (on
commit, from signals.py): the order and its items (per order), the shipping addresses (per user),
and the catalogue (one key, replaced by any product save: a product may appear in many orders,
and a name or SKU changes rarely enough that rebuilding every entry once is cheaper than finding
its orders). A reader that built its entry from rows read before a change and stored it after the
change stored the old versions, so the next reader rebuilds. A missing version key (never set,
expired, or evicted: Redis runs allkeys-lru) means "rebuild", never "valid": the reader first
creates it (SET NX with a fresh version, then reads back whichever version won, so concurrent
readers agree), before it reads the rows, and no entry is ever stored under a missing version.
(Treating missing as a value would let an entry built before a change match again once the
change's version is evicted.) Without Redis (down, or an invalidation lost while it was) an
entry lives at most ORDER_DETAIL_CACHE_TIMEOUT seconds.
Changes made with QuerySet.update() or raw SQL send no signals: call invalidate_* after them."""

import json
import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from common import cache as safe

from . import selectors
from .serializers import order_data

CATALOG_VERSION_KEY = "orders:detail:v:catalog"


def _data_key(order_id: int) -> str:
    return f"orders:detail:{order_id}"


def _order_version_key(order_id: int) -> str:
    return f"orders:detail:v:order:{order_id}"


def _user_version_key(user_id: int) -> str:
    return f"orders:detail:v:user:{user_id}"


def order_detail_json(user, order_id: int) -> bytes:
    """The JSON of `user`'s order `order_id`; Http404 (from the selector) when it is not theirs."""
    timeout = settings.ORDER_DETAIL_CACHE_TIMEOUT
    if not timeout:
        return _build(user, order_id)
    keys = [
        _data_key(order_id),
        _order_version_key(order_id),
        _user_version_key(user.pk),
        CATALOG_VERSION_KEY,
    ]
    found = safe.safe_get_many(keys)
    versions = [found.get(k) for k in keys[1:]]
    entry = found.get(keys[0])
    if None in versions:
        versions = _create_versions(keys[1:], versions, timeout)
    elif entry is not None and entry["versions"] == versions and entry["user_id"] == user.pk:
        return entry["body"]
    # Another user's cached order is rebuilt for this user too: the selector answers 404.
    body = _build(user, order_id)
    if versions is not None:
        safe.safe_set(keys[0], {"user_id": user.pk, "versions": versions, "body": body}, timeout)
    return body


def _create_versions(keys: list[str], versions: list, timeout: int) -> list[str] | None:
    """The versions with the missing ones created (SET NX) and read back, or None if Redis
    could not say (then nothing is cached). Runs before the rows are read, so a change that
    commits after the read replaces a version this entry is stored under."""
    fresh = uuid.uuid4().hex[:16]
    for key, version in zip(keys, versions, strict=True):
        if version is None:
            safe.safe_add(key, fresh, timeout + 60)
    found = safe.safe_get_many(keys)
    agreed = [found.get(k) for k in keys]
    return None if None in agreed else agreed


def _build(user, order_id: int) -> bytes:
    order = selectors.order_for_user(user, order_id)
    return json.dumps(order_data(order), cls=DjangoJSONEncoder).encode()


def _replace_versions(keys: list[str]) -> None:
    # A version outlives every entry built before it changed, so none of those matches again.
    timeout = settings.ORDER_DETAIL_CACHE_TIMEOUT
    if not timeout or not keys:
        return
    version = uuid.uuid4().hex[:16]
    transaction.on_commit(lambda: safe.safe_set_many({k: version for k in keys}, timeout + 60))


def invalidate_orders(order_ids) -> None:
    _replace_versions([_order_version_key(i) for i in set(order_ids) if i is not None])


def invalidate_user(user_id: int) -> None:
    _replace_versions([_user_version_key(user_id)])


def invalidate_catalog() -> None:
    _replace_versions([CATALOG_VERSION_KEY])
