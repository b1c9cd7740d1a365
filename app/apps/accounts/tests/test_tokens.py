from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.accounts.services import create_token, hash_token
from conftest import api_client

pytestmark = pytest.mark.django_db


def test_token_is_stored_hashed(user, token):
    row = ApiToken.objects.get(user=user)
    assert row.key_hash == hash_token(token)
    assert token not in (row.key_hash, row.prefix)
    assert len(token) >= 40


def test_token_authenticates(api, user):
    response = api.get("/api/me/")
    assert response.status_code == 200
    assert response.json()["username"] == user.username


def test_warm_token_lookup_costs_no_query(api, django_assert_num_queries):
    api.get("/api/me/")
    with django_assert_num_queries(0):
        assert api.get("/api/me/").status_code == 200


def test_cached_lookup_holds_no_password_hash(api, user, token):
    api.get("/api/me/")
    entry = cache.get(f"auth:token:{hash_token(token)}")
    assert entry is not None
    assert "password" not in entry["user"]
    assert user.password not in repr(entry)


@pytest.mark.parametrize(
    "header,message",
    [
        ("Bearer nope", "invalid or expired token"),
        ("Bearer ", "malformed Authorization header"),
        ("Basic dXNlcjpwdw==", "malformed Authorization header"),
        ("Bearer " + "x" * 5000, "invalid or expired token"),
    ],
)
def test_bad_authorization_is_401(user, header, message):
    from django.test import Client

    response = Client(HTTP_AUTHORIZATION=header).get("/api/me/")
    assert response.status_code == 401
    assert message in response.json()["error"]["message"]


def test_expired_token_is_refused(user):
    token = create_token(user, expires_at=timezone.now() - timedelta(seconds=1))
    assert api_client(token).get("/api/me/").status_code == 401


def test_deactivating_a_user_revokes_at_once(api, user, django_capture_on_commit_callbacks):
    assert api.get("/api/me/").status_code == 200  # now cached
    with django_capture_on_commit_callbacks(execute=True):
        user.is_active = False
        user.save()
    assert api.get("/api/me/").status_code == 401


def test_deleting_a_token_revokes_at_once(api, user, django_capture_on_commit_callbacks):
    assert api.get("/api/me/").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        ApiToken.objects.get(user=user).delete()
    assert api.get("/api/me/").status_code == 401


def test_session_login_does_not_authenticate_the_api(user):
    # The API ignores the session cookie (it is csrf-exempt because only tokens count).
    client = api_client()
    client.force_login(user)
    assert client.get("/api/orders/").status_code == 401


def test_create_api_token_command(user, capsys):
    call_command("create_api_token", user.username, "--name", "cli")
    token = capsys.readouterr().out.strip()
    assert api_client(token).get("/api/me/").status_code == 200
