"""Rotating DJANGO_SECRET_KEY: with the previous key in DJANGO_SECRET_KEY_FALLBACKS, sessions
and signed values made before the rotation stay valid; without it they do not."""

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.test import Client

from config.tests.test_production import SECRET, manage, prod_env, wsgi_settings

OLD = "old-k3y-for-tests-only-" + "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF"
NEW = "new-k3y-for-tests-only-" + "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvu"


def test_fallbacks_come_from_the_env(tmp_path):
    env = prod_env(tmp_path, DJANGO_SECRET_KEY_FALLBACKS=f"{OLD}, {NEW}")
    shown = wsgi_settings(env, "print(*s.SECRET_KEY_FALLBACKS, sep='|')")
    assert shown.stdout.strip() == f"{OLD}|{NEW}", shown.stderr
    # optional: unset and empty both mean no fallback
    for value in (None, ""):
        none = wsgi_settings(
            prod_env(tmp_path, DJANGO_SECRET_KEY_FALLBACKS=value),
            "print(len(s.SECRET_KEY_FALLBACKS))",
        )
        assert none.stdout.strip() == "0", none.stderr


def test_check_deploy_stays_clean_with_a_fallback(tmp_path):
    result = manage(
        prod_env(tmp_path, DJANGO_SECRET_KEY_FALLBACKS=OLD),
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "value,why",
    [
        ("short-old-key", "key 1 is weak"),
        (f"{OLD},django-insecure-" + "x1y2z3" * 10, "key 2 is weak"),
        (SECRET, "key 1 is the current DJANGO_SECRET_KEY"),
    ],
)
def test_malformed_fallbacks_stop_startup_naming_the_key(tmp_path, value, why):
    result = manage(prod_env(tmp_path, DJANGO_SECRET_KEY_FALLBACKS=value), "check")
    assert result.returncode != 0
    assert f"DJANGO_SECRET_KEY_FALLBACKS is malformed: {why}" in result.stderr, result.stderr
    assert value not in result.stderr  # a key is never echoed


def test_value_signed_with_the_old_key_verifies_only_with_the_fallback(tmp_path):
    old = wsgi_settings(
        prod_env(tmp_path, DJANGO_SECRET_KEY=OLD),
        "from django.core import signing; print(signing.dumps('cart-42'))",
    )
    signed = old.stdout.strip()
    assert signed, old.stderr
    check = f"from django.core import signing; print(signing.loads({signed!r}))"
    rotated = prod_env(tmp_path, DJANGO_SECRET_KEY=NEW, DJANGO_SECRET_KEY_FALLBACKS=OLD)
    assert wsgi_settings(rotated, check).stdout.strip() == "cart-42"
    refused = wsgi_settings(prod_env(tmp_path, DJANGO_SECRET_KEY=NEW), check)
    assert "BadSignature" in refused.stderr


@pytest.mark.django_db
def test_admin_session_survives_a_rotation_with_the_fallback(settings):
    """The session backend (cached_db, common.sessions): Django moves a session whose hash
    matches a fallback key to a new session key; the client follows the new cookie."""
    get_user_model().objects.create_superuser("root", "root@example.test", "pw-not-used-123")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD, []
    client = Client()
    assert client.login(username="root", password="pw-not-used-123")
    assert client.get("/admin/").status_code == 200
    before = client.cookies["sessionid"].value

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW, [OLD]
    assert client.get("/admin/").status_code == 200
    assert client.cookies["sessionid"].value != before  # cycled to a session signed by NEW
    assert client.get("/admin/").status_code == 200

    # the old session key is gone, so a stolen copy of it is worthless now
    stale = Client()
    stale.cookies["sessionid"] = before
    assert stale.get("/admin/").status_code == 302


@pytest.mark.django_db
def test_admin_session_is_lost_on_a_rotation_without_the_fallback(settings):
    get_user_model().objects.create_superuser("root", "root@example.test", "pw-not-used-123")
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD, []
    client = Client()
    assert client.login(username="root", password="pw-not-used-123")
    settings.SECRET_KEY = NEW
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_signing_refuses_a_foreign_key(settings):
    """Guard for the tests above: the probe is sensitive to the key at all."""
    settings.SECRET_KEY = OLD
    signed = signing.dumps("x")
    settings.SECRET_KEY = NEW
    with pytest.raises(signing.BadSignature):
        signing.loads(signed)
