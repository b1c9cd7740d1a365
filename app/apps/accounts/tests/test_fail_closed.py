"""Revoking a token or logging out works while Redis is unreachable or skipped: the cached
entry must not authenticate afterwards (apps/accounts/authcache.py)."""

import pytest
from django.conf import settings
from django.test import Client, override_settings

from apps.accounts.models import ApiToken
from common import cache as safe
from conftest import closed_port

pytestmark = pytest.mark.django_db


def skip_window():
    """This process just saw a Redis error: it skips Redis for REDIS_BACKOFF_SECONDS."""
    safe.mark_redis_down(ConnectionError("test"), "test")
    assert not safe.redis_available()


def skip_window_over():
    safe._down_until = 0.0


def redis_unreachable():
    caches = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://:x@127.0.0.1:{closed_port()}/0",
        }
    }
    return override_settings(CACHES=caches)


def revoke(user, capture):
    with capture(execute=True):
        ApiToken.objects.get(user=user).delete()


def test_revoked_in_the_skip_window_with_redis_up(api, user, django_capture_on_commit_callbacks):
    assert api.get("/api/me/").status_code == 200  # cached
    skip_window()
    revoke(user, django_capture_on_commit_callbacks)
    assert api.get("/api/me/").status_code == 401  # in the window: from the database
    skip_window_over()
    assert api.get("/api/me/").status_code == 401  # after it: the entry is gone


def test_revoked_while_redis_is_down(api, user, django_capture_on_commit_callbacks):
    assert api.get("/api/me/").status_code == 200  # cached
    with redis_unreachable():
        revoke(user, django_capture_on_commit_callbacks)
        assert api.get("/api/me/").status_code == 401
    # Redis is back with the old entry still in it.
    assert api.get("/api/me/").status_code == 401
    skip_window_over()
    assert api.get("/api/me/").status_code == 401


def admin_session(admin_user):
    client = Client()
    client.force_login(admin_user)
    assert client.get("/admin/").status_code == 200  # the session is cached now
    return client, client.cookies[settings.SESSION_COOKIE_NAME].value


def stolen(cookie):
    thief = Client()
    thief.cookies[settings.SESSION_COOKIE_NAME] = cookie
    return thief


def test_logout_in_the_skip_window_with_redis_up(admin_user):
    client, cookie = admin_session(admin_user)
    skip_window()
    assert client.post("/admin/logout/").status_code == 200
    skip_window_over()
    assert stolen(cookie).get("/admin/").status_code == 302


def test_logout_while_redis_is_down(admin_user):
    client, cookie = admin_session(admin_user)
    with redis_unreachable():
        assert client.post("/admin/logout/").status_code == 200
        assert stolen(cookie).get("/admin/").status_code == 302
    assert stolen(cookie).get("/admin/").status_code == 302
    skip_window_over()
    assert stolen(cookie).get("/admin/").status_code == 302
