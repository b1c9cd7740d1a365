from django.db import transaction

from common import cache as safe

from .selectors import CATEGORY_CACHE_KEY


def invalidate_categories() -> None:
    # After commit: deleting earlier would let a concurrent reader re-cache the old rows.
    transaction.on_commit(lambda: safe.safe_delete(CATEGORY_CACHE_KEY))
