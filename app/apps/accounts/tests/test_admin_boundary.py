"""A Bearer token authenticates API views only: never the admin or any session page."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.accounts.models import ApiToken
from apps.accounts.services import create_token
from conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_token(admin_user):
    return create_token(admin_user, name="staff")


def bearer(token, **kwargs):
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", **kwargs)


def test_staff_token_does_not_open_the_admin(staff_token):
    response = bearer(staff_token).get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert b"Site administration" not in response.content


def test_staff_token_admin_post_changes_nothing(admin_user, staff_token):
    victim = make_user("victim")
    client = bearer(staff_token, enforce_csrf_checks=True)
    # Whatever CSRF token the attacker can fetch with the token (the change form's, or the
    # login page's when the admin is closed to them) ...
    client.get(f"/admin/auth/user/{victim.pk}/change/")
    client.get("/admin/login/")
    csrf = client.cookies["csrftoken"].value
    response = client.post(
        f"/admin/auth/user/{victim.pk}/change/",
        {
            "csrfmiddlewaretoken": csrf,
            "username": "victim",
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
            "date_joined_0": "2024-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    # ... the change form still sees an anonymous visitor.
    assert response.status_code in (302, 403)
    if response.status_code == 302:
        assert response["Location"].startswith("/admin/login/")
    victim.refresh_from_db()
    assert not victim.is_staff and not victim.is_superuser


def test_token_still_authenticates_the_api(staff_token, admin_user):
    response = bearer(staff_token).get("/api/me/")
    assert response.status_code == 200
    assert response.json()["username"] == admin_user.username


def test_session_does_not_authenticate_the_api_even_for_staff(admin_client):
    assert admin_client.get("/api/me/").status_code == 401


def test_token_owner_is_read_only_in_the_admin(admin_user):
    staff = make_user("tokenkeeper", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="change_apitoken"),
        Permission.objects.get(codename="view_apitoken"),
    )
    create_token(staff, name="mine")
    row = ApiToken.objects.get(user=staff)
    client = Client()
    client.force_login(staff)
    response = client.post(
        f"/admin/accounts/apitoken/{row.pk}/change/",
        {"user": admin_user.pk, "name": "moved", "expires_at_0": "", "expires_at_1": ""},
    )
    assert response.status_code == 302, response.content[:2000]
    row.refresh_from_db()
    assert row.user_id == staff.pk  # the owner did not move
    assert row.name == "moved"  # the rest of the form still works


def test_rate_limiter_and_view_share_one_token_look_up(staff_token, monkeypatch):
    from apps.accounts import services
    from common import auth

    calls = []
    real = services.authenticate_token

    def counting(token):
        calls.append(token)
        return real(token)

    monkeypatch.setattr(auth, "authenticate_token", counting)
    assert bearer(staff_token).get("/api/me/").status_code == 200
    assert calls == [staff_token]
