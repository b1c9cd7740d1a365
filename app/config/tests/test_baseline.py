"""The benchmark's baseline settings (config.settings.baseline): production's settings with
Django's default connection handling straight to PostgreSQL, and /static/ served by the app."""

import sys

from django.test import Client, override_settings

from .test_production import prod_env, wsgi_settings


def test_baseline_uses_direct_url_without_persistent_connections(tmp_path):
    env = prod_env(
        tmp_path,
        DJANGO_SETTINGS_MODULE="config.settings.baseline",
        DATABASE_URL="postgres://app:pw@pgbouncer.invalid:6432/orders",
        DATABASE_DIRECT_URL="postgres://app:pw@postgres.invalid:5432/orders",
    )
    wsgi = wsgi_settings(
        env,
        "d = s.DATABASES['default']; print(d['HOST'], d['PORT'], d['CONN_MAX_AGE'],"
        " d.get('DISABLE_SERVER_SIDE_CURSORS', False), s.ROOT_URLCONF, s.SECURE_SSL_REDIRECT)",
    )
    assert wsgi.stdout.split() == [
        "postgres.invalid",
        "5432",
        "0",
        "False",
        "config.urls_baseline",
        "True",
    ], wsgi.stderr


def test_baseline_urls_serve_static_files_from_static_root(tmp_path, db):
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "site.css").write_text("body { color: black }\n")
    with override_settings(ROOT_URLCONF="config.urls_baseline", STATIC_ROOT=str(tmp_path)):
        # urls_baseline reads STATIC_ROOT when it is imported; make it import now.
        sys.modules.pop("config.urls_baseline", None)
        client = Client()
        ok = client.get("/static/css/site.css")
        missing = client.get("/static/css/missing.css")
        ping = client.get("/api/ping/")
    sys.modules.pop("config.urls_baseline", None)
    assert ok.status_code == 200
    assert b"".join(ok.streaming_content) == b"body { color: black }\n"
    assert missing.status_code == 404
    assert ping.status_code == 200
