"""The production settings and the deploy path, exercised as the deploy runs them: in
subprocesses with only the environment (docs/decisions.md §3) to go on."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

APP = Path(__file__).resolve().parent.parent.parent
DB_URL = os.environ.get(
    "ORDERS_TEST_DATABASE_URL", "postgres://orders:orders-test@127.0.0.1:55432/orders"
)
REDIS_URL = os.environ.get("ORDERS_TEST_REDIS_URL", "redis://:orders-test@127.0.0.1:56379/0")
SECRET = "k3y-for-tests-only-" + "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF"
KEYS = [
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "DATABASE_DIRECT_URL",
    "REDIS_URL",
    "DJANGO_STATIC_ROOT",
    "DJANGO_MEDIA_ROOT",
    "DJANGO_LOG_LEVEL",
    "DJANGO_RELEASE",
    "DJANGO_TRUSTED_PROXIES",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS",
    "DJANGO_HSTS_PRELOAD",
    "CELERY_BROKER_URL",
    "EMAIL_URL",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_db(url: str, name: str | None = None, port: int | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if port is not None:
        netloc = netloc.rsplit(":", 1)[0] + f":{port}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{name}" if name else parts.path))


def prod_env(tmp_path, **overrides) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_", "EMAIL_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=SECRET,
        DJANGO_ALLOWED_HOSTS="shop.example.test,www.shop.example.test",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://shop.example.test",
        DATABASE_URL=DB_URL,
        DATABASE_DIRECT_URL=DB_URL,
        REDIS_URL=REDIS_URL,
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
        DJANGO_MEDIA_ROOT=str(tmp_path / "media"),
        DJANGO_LOG_LEVEL="INFO",
        DJANGO_RELEASE="r2024.1-abc",
        DJANGO_TRUSTED_PROXIES="127.0.0.1/32,::1/128,unix",
        DJANGO_HSTS_INCLUDE_SUBDOMAINS="true",
        DJANGO_HSTS_PRELOAD="true",
        CELERY_BROKER_URL=REDIS_URL.rsplit("/", 1)[0] + "/1",
        EMAIL_URL="smtp+tls://orders%40shop.example.test:mail-secret@smtp.example.test:587",
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def wsgi_settings(env, code: str) -> subprocess.CompletedProcess:
    """Import the app as gunicorn does, then run ``code`` with ``s`` = django.conf.settings."""
    prelude = "import config.wsgi; from django.conf import settings as s"
    return subprocess.run(
        [sys.executable, "-c", f"{prelude}; {code}"],
        cwd=APP,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def manage(env, *args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "config.manage", *args],
        cwd=APP,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_check_deploy_has_zero_warnings(tmp_path):
    result = manage(prod_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    "subdomains,preload,silenced",
    [
        ("false", "true", "security.W005"),
        ("true", "false", "security.W021"),
        ("false", "false", "security.W005 security.W021"),
    ],
)
def test_hsts_opt_outs_silence_only_their_check(tmp_path, subdomains, preload, silenced):
    env = prod_env(tmp_path, DJANGO_HSTS_INCLUDE_SUBDOMAINS=subdomains, DJANGO_HSTS_PRELOAD=preload)
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    shown = manage(
        env,
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings; print(*settings.SILENCED_SYSTEM_CHECKS)",
    )
    assert shown.stdout.strip() == silenced


@pytest.mark.parametrize("key", KEYS)
def test_missing_key_stops_startup_naming_it(tmp_path, key):
    result = manage(prod_env(tmp_path, **{key: None}), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{key} is not set" in result.stderr


@pytest.mark.parametrize(
    "key,value",
    [
        ("DJANGO_SECRET_KEY", "short"),
        ("DJANGO_SECRET_KEY", "django-insecure-" + "x1y2z3" * 10),
        ("DJANGO_ALLOWED_HOSTS", ""),
        ("DJANGO_ALLOWED_HOSTS", "*"),
        ("DJANGO_CSRF_TRUSTED_ORIGINS", "shop.example.test"),
        ("DATABASE_URL", "mysql://u:p@h/db"),
        ("DATABASE_URL", "postgres://u:p@h:notaport/db"),
        ("DATABASE_DIRECT_URL", "postgres://u:p@h:5432/"),
        ("REDIS_URL", "http://localhost"),
        ("DJANGO_STATIC_ROOT", "relative/static"),
        ("DJANGO_MEDIA_ROOT", ""),
        ("DJANGO_LOG_LEVEL", "LOUD"),
        ("DJANGO_RELEASE", "has spaces"),
        ("DJANGO_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("DJANGO_TRUSTED_PROXIES", "nginx"),
        ("DJANGO_HSTS_INCLUDE_SUBDOMAINS", "maybe"),
        ("DJANGO_HSTS_PRELOAD", ""),
        ("DJANGO_ORDER_DETAIL_CACHE_SECONDS", "-1"),
        ("DJANGO_ORDER_DETAIL_CACHE_SECONDS", "5m"),
        ("DJANGO_SERVER_TIMING", "sometimes"),
        ("CELERY_BROKER_URL", "amqp://guest:guest@localhost//"),
        ("CELERY_BROKER_URL", "rediss://:pw@q:6380/0?ssl_cert_reqs=none"),
        ("CELERY_VISIBILITY_TIMEOUT", "60"),
        ("CELERY_VISIBILITY_TIMEOUT", "5m"),
        ("EMAIL_URL", "consolemail://"),
        ("EMAIL_URL", "smtp://u:pw@mail:25?EMAIL_USE_TLS=1"),
        ("DJANGO_DEFAULT_FROM_EMAIL", "not an address"),
    ],
)
def test_malformed_key_stops_startup_naming_it(tmp_path, key, value):
    result = manage(prod_env(tmp_path, **{key: value}), "check")
    assert result.returncode != 0
    assert f"{key} is malformed" in result.stderr, result.stderr


def test_manage_uses_direct_url_and_wsgi_uses_pooled(tmp_path):
    env = prod_env(
        tmp_path,
        DATABASE_URL="postgres://app:pw@pgbouncer.invalid:6432/orders",
        DATABASE_DIRECT_URL="postgres://app:pw@postgres.invalid:5432/orders",
    )
    code = (
        "from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(d['HOST'], d['PORT'], d.get('DISABLE_SERVER_SIDE_CURSORS', False))"
    )
    assert manage(env, "shell", "--no-imports", "-c", code).stdout.split() == [
        "postgres.invalid",
        "5432",
        "False",
    ]
    pooled = manage({**env, "DJANGO_DATABASE_DIRECT": "0"}, "shell", "--no-imports", "-c", code)
    assert pooled.stdout.split() == ["pgbouncer.invalid", "6432", "True"]
    wsgi = wsgi_settings(
        env,
        "d = s.DATABASES['default']; print(d['HOST'], d['CONN_MAX_AGE'],"
        " d['CONN_HEALTH_CHECKS'], d['OPTIONS']['prepare_threshold'])",
    )
    assert wsgi.stdout.split() == ["pgbouncer.invalid", "60", "True", "None"], wsgi.stderr


@pytest.mark.parametrize(
    ("mode", "host", "max_age", "pool"),
    [
        (None, "pgbouncer.invalid", "60", "False"),
        ("persistent", "pgbouncer.invalid", "60", "False"),
        ("per-request", "pgbouncer.invalid", "0", "False"),
        ("pool", "postgres.invalid", "0", "True"),
    ],
)
def test_db_connection_modes(tmp_path, mode, host, max_age, pool):
    env = prod_env(
        tmp_path,
        DATABASE_URL="postgres://app:pw@pgbouncer.invalid:6432/orders",
        DATABASE_DIRECT_URL="postgres://app:pw@postgres.invalid:5432/orders",
        DJANGO_DB_CONNECTIONS=mode,
    )
    wsgi = wsgi_settings(
        env,
        "d = s.DATABASES['default']; print(d['HOST'], d['CONN_MAX_AGE'], 'pool' in d['OPTIONS'])",
    )
    assert wsgi.stdout.split() == [host, max_age, pool], wsgi.stderr


def test_db_connection_pool_answers_queries(tmp_path):
    """The pool mode really connects (psycopg_pool is installed) and reuses its connections:
    six closes and re-opens see fewer than six server processes (max_size 4)."""
    env = prod_env(tmp_path, DJANGO_DB_CONNECTIONS="pool")
    result = wsgi_settings(
        env,
        "from django.db import connection, close_old_connections\n"
        "ids = set()\n"
        "for _ in range(6):\n"
        "    with connection.cursor() as c:\n"
        "        c.execute('SELECT pg_backend_pid()'); ids.add(c.fetchone()[0])\n"
        "    close_old_connections(); connection.close()\n"
        "print(type(connection.pool).__name__, len(ids))",
    )
    name, backends = result.stdout.split()
    assert name == "ConnectionPool", result.stderr
    assert int(backends) <= 4, result.stdout


def test_db_connection_mode_is_checked(tmp_path):
    result = manage(prod_env(tmp_path, DJANGO_DB_CONNECTIONS="sometimes"), "check")
    assert result.returncode != 0
    expected = "DJANGO_DB_CONNECTIONS is malformed: use one of PERSISTENT, PER-REQUEST, POOL"
    assert expected in result.stderr, result.stderr


@pytest.fixture
def deploy_db():
    """A fresh database, as a new environment's first deploy sees it."""
    name = f"orders_deploy_{os.getpid()}"
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield with_db(DB_URL, name)
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_deploy_path_migrate_collectstatic_gunicorn(tmp_path, deploy_db):
    # The pooled URL points nowhere: migrate must use DATABASE_DIRECT_URL.
    env = prod_env(
        tmp_path, DATABASE_URL=with_db(deploy_db, port=free_port()), DATABASE_DIRECT_URL=deploy_db
    )
    result = manage(env, "migrate", "--noinput")
    assert result.returncode == 0, result.stderr
    assert manage(env, "migrate", "--check").returncode == 0
    missing = manage(env, "makemigrations", "--check", "--dry-run")
    assert missing.returncode == 0, "models changed without a migration:\n" + missing.stdout
    result = manage(env, "collectstatic", "--noinput")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()

    env["DATABASE_URL"] = deploy_db  # gunicorn serves through the "pooled" URL
    with gunicorn(env) as get:
        assert get("/livez") == (200, {"status": "ok", "release": "r2024.1-abc"})
        status, body = get("/healthz")
        assert (status, body["checks"]) == (200, {"database": "ok", "redis": "ok"})
        assert get("/api/categories/", https=True) == (200, {"results": []})
        assert get("/api/ping/")[0] == 301  # plain HTTP is redirected to HTTPS
        assert get("/api/orders/", https=True)[0] == 401
        assert get("/admin/login/", https=True, raw=True)[0] == 200


def test_gunicorn_with_database_down(tmp_path):
    dead = with_db(DB_URL, port=free_port())
    env = prod_env(tmp_path, DATABASE_URL=dead, DATABASE_DIRECT_URL=dead)
    with gunicorn(env) as get:
        assert get("/livez")[0] == 200
        status, body = get("/healthz")
        assert (status, body["checks"]) == (503, {"database": "error", "redis": "ok"})
        assert "postgres" not in str(body)
        status, body = get("/api/categories/", https=True)
        assert (status, body["error"]["code"]) == (503, "unavailable")
        assert get("/api/ping/", https=True)[0] == 200


def test_gunicorn_with_redis_down(tmp_path, django_db_setup):
    from django.db import connection

    test_db = with_db(DB_URL, connection.settings_dict["NAME"])  # pytest-django's, migrated
    env = prod_env(
        tmp_path,
        REDIS_URL=f"redis://:pw@127.0.0.1:{free_port()}/0",
        DATABASE_URL=test_db,
        DATABASE_DIRECT_URL=test_db,
    )
    with gunicorn(env) as get:
        status, body = get("/healthz")
        assert (status, body["checks"]) == (503, {"database": "ok", "redis": "error"})
        start = time.monotonic()
        assert get("/api/categories/", https=True) == (200, {"results": []})
        assert get("/api/ping/", https=True)[0] == 200
        assert time.monotonic() - start < 2


class gunicorn:  # noqa: N801 - used as a context manager
    def __init__(self, env):
        self.env = env
        self.sock = f"/tmp/orders-test-{os.getpid()}-{time.monotonic_ns()}.sock"

    def __enter__(self):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"unix:{self.sock}",
                "--workers",
                "1",
                "--timeout",
                "30",
            ],
            cwd=APP,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("gunicorn died:\n" + self.proc.stderr.read())
            try:
                if self.get("/livez")[0] == 200:
                    return self.get
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("gunicorn did not answer /livez")

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if os.path.exists(self.sock):
            os.unlink(self.sock)

    def get(self, path, https=False, raw=False, method="GET", body=None, headers=None):
        """GET (or ``method``) over the unix socket, as nginx would send it."""
        import http.client
        import json

        class UnixConnection(http.client.HTTPConnection):
            def connect(conn):
                conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.sock.settimeout(10)
                conn.sock.connect(self.sock)

        conn = UnixConnection("localhost")
        headers = {
            "Host": "shop.example.test",
            "X-Forwarded-For": "198.51.100.1",
            **(headers or {}),
        }
        if https:
            headers["X-Forwarded-Proto"] = "https"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        if raw or response.status in (301, 302):
            return response.status, data
        return response.status, json.loads(data)


@pytest.mark.parametrize(("value", "shown"), [(None, "False"), ("true", "True"), ("off", "False")])
def test_server_timing_is_opt_in(tmp_path, value, shown):
    wsgi = wsgi_settings(prod_env(tmp_path, DJANGO_SERVER_TIMING=value), "print(s.SERVER_TIMING)")
    assert wsgi.stdout.strip() == shown, wsgi.stderr


def test_mail_and_broker_settings(tmp_path):
    env = prod_env(
        tmp_path,
        CELERY_BROKER_URL=(
            "rediss://:pw@queue.internal:6380/1"
            "?ssl_cert_reqs=required&ssl_check_hostname=true&ssl_ca_certs=/etc/orders/ca.crt"
        ),
        CELERY_VISIBILITY_TIMEOUT="900",
    )
    code = (
        "from config.celery import app; c = app.conf; r, w = app.connection_for_read(),"
        " app.connection_for_write(); assert r.as_uri(True) == w.as_uri(True) and r.ssl == w.ssl;"
        "print(w.as_uri(True), w.ssl['ssl_ca_certs'], w.ssl['ssl_cert_reqs'],"
        " w.ssl['ssl_check_hostname'], w.transport_options['visibility_timeout'],"
        " c.task_acks_late, c.task_always_eager, c.worker_hijack_root_logger, c.timezone);"
        "print(s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, s.EMAIL_USE_TLS, s.EMAIL_USE_SSL,"
        " s.EMAIL_TIMEOUT, s.DEFAULT_FROM_EMAIL)"
    )
    result = wsgi_settings(env, code)
    assert result.stdout.split() == [
        "rediss://:pw@queue.internal:6380/1",
        "/etc/orders/ca.crt",
        "2",  # ssl.CERT_REQUIRED
        "True",
        "900",
        "True",
        "False",
        "False",
        "UTC",
        "smtp.example.test",
        "587",
        "orders@shop.example.test",
        "True",
        "False",
        "10",
        "orders@shop.example.test",
    ], result.stderr
    # The default visibility timeout, and DJANGO_DEFAULT_FROM_EMAIL given.
    env = prod_env(tmp_path, DJANGO_DEFAULT_FROM_EMAIL="Shop <shop@example.test>")
    result = wsgi_settings(
        env,
        "from config.celery import app;"
        "print(app.conf.broker_transport_options['visibility_timeout'], app.conf.broker_use_ssl);"
        "print(s.DEFAULT_FROM_EMAIL)",
    )
    assert result.stdout.splitlines() == ["300 None", "Shop <shop@example.test>"], result.stderr


def test_bad_mail_url_never_shows_its_password(tmp_path):
    env = prod_env(tmp_path, EMAIL_URL="smtps://u:mail-secret@smtp.example.test")
    result = manage(env, "check")
    assert "EMAIL_URL is malformed" in result.stderr
    assert "mail-secret" not in result.stdout + result.stderr


def test_gunicorn_with_broker_down_still_creates_orders(tmp_path, transactional_db):
    """The confirmation cannot be queued: the order is still 201, within about a second, and
    the log names the order (the sweep sends the mail later)."""
    from django.db import connection

    from apps.accounts.services import create_token
    from conftest import make_product, make_user

    token = create_token(make_user())
    product = make_product(stock=5)
    test_db = with_db(DB_URL, connection.settings_dict["NAME"])
    env = prod_env(
        tmp_path,
        CELERY_BROKER_URL=f"redis://:pw@127.0.0.1:{free_port()}/1",
        DATABASE_URL=test_db,
        DATABASE_DIRECT_URL=test_db,
    )
    body = json.dumps({"items": [{"product_id": product.pk, "quantity": 1}]})
    server = gunicorn(env)
    with server as get:
        start = time.monotonic()
        status, created = get(
            "/api/orders/",
            https=True,
            method="POST",
            body=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        elapsed = time.monotonic() - start
    assert status == 201, created
    assert elapsed < 2, elapsed
    log = server.proc.stderr.read()
    warnings = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and '"orders.confirmation"' in line
    ]
    assert [(w["level"], w["order_id"]) for w in warnings] == [("WARNING", created["id"])], log
    assert "pw@" not in log
