"""The lost-invalidation record (apps/accounts/authcache.py): processes that did not lose the
invalidation themselves do not trust the stale entry either."""

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings

from apps.accounts import authcache
from apps.accounts.models import ApiToken, LostInvalidation
from apps.accounts.services import hash_token
from common import cache as safe

from .test_fail_closed import redis_unreachable, revoke

pytestmark = pytest.mark.django_db


def lose_the_revocation(api, user, token, capture):
    assert api.get("/api/me/").status_code == 200
    with redis_unreachable():
        revoke(user, capture)
    key = f"auth:token:{hash_token(token)}"
    assert cache.get(key) is not None  # still in Redis
    assert list(LostInvalidation.objects.values_list("key", flat=True)) == [key]
    return key


def test_a_new_process_checks_before_trusting_redis(
    api, user, token, django_capture_on_commit_callbacks
):
    key = lose_the_revocation(api, user, token, django_capture_on_commit_callbacks)
    safe.reset()  # a process that never saw Redis fail ...
    authcache.reset(in_sync=False)  # ... and has not checked yet
    assert api.get("/api/me/").status_code == 401
    assert cache.get(key) is None
    assert not LostInvalidation.objects.exists()


@override_settings(AUTH_CACHE_RECHECK_SECONDS=0)
def test_a_process_in_sync_rechecks_after_the_interval(
    api, user, token, django_capture_on_commit_callbacks
):
    lose_the_revocation(api, user, token, django_capture_on_commit_callbacks)
    safe.reset()
    authcache.reset(in_sync=True)  # checked just before the revocation was lost
    assert api.get("/api/me/").status_code == 401


def test_out_of_sync_while_redis_is_still_unreachable(
    api, user, token, django_capture_on_commit_callbacks
):
    lose_the_revocation(api, user, token, django_capture_on_commit_callbacks)
    authcache.reset(in_sync=False)
    with redis_unreachable():
        safe.reset()
        assert authcache.get(f"auth:token:{hash_token(token)}") is None
    assert LostInvalidation.objects.exists()  # kept until Redis confirms the delete


def test_warm_lookup_with_recheck_costs_one_query(api, django_assert_num_queries):
    assert api.get("/api/me/").status_code == 200
    authcache.reset(in_sync=False)
    with django_assert_num_queries(1):  # the (empty) LostInvalidation table, nothing else
        assert api.get("/api/me/").status_code == 200
    with django_assert_num_queries(0):
        assert api.get("/api/me/").status_code == 200
    assert settings.AUTH_CACHE_RECHECK_SECONDS > 60  # (test settings: no clock in budgets)
    assert ApiToken.objects.count() == 1
