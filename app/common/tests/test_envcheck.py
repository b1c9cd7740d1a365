"""The env readers for the broker and the mail server (common/envcheck.py), as unit tests;
config/tests/test_production.py checks that production.py uses them."""

import ssl

import pytest
from django.core.exceptions import ImproperlyConfigured

from common.envcheck import env_broker, env_email, env_from_email

CA = "/etc/orders/tls/ca.crt"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("redis://:pw@queue.internal:6380/1", "redis://:pw@queue.internal:6380/1"),
        ("redis://orders:p%40ss@10.0.0.5:6379/0", "redis://orders:p%40ss@10.0.0.5:6379/0"),
        ("redis://queue.internal", "redis://queue.internal"),
    ],
)
def test_broker_redis(monkeypatch, value, url):
    monkeypatch.setenv("CELERY_BROKER_URL", value)
    assert env_broker("CELERY_BROKER_URL") == (url, None)


def test_broker_rediss_with_ca_verifies_certificate_and_host_name(monkeypatch):
    # The query the stack writes for REDIS_URL (roles/django_app/tasks/release_facts.yml).
    value = (
        "rediss://:pw@queue.internal:6380/1"
        f"?ssl_cert_reqs=required&ssl_check_hostname=true&ssl_ca_certs={CA}"
    )
    monkeypatch.setenv("CELERY_BROKER_URL", value)
    url, options = env_broker("CELERY_BROKER_URL")
    assert url == "rediss://:pw@queue.internal:6380/1"  # kombu never sees the query
    assert options == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_check_hostname": True,
        "ssl_ca_certs": CA,
    }


def test_broker_rediss_without_options_still_verifies(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "rediss://:pw@queue.example.org:6380/0")
    assert env_broker("CELERY_BROKER_URL") == (
        "rediss://:pw@queue.example.org:6380/0",
        {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True},
    )


def test_broker_tls_options_reach_redis_py_unchanged(monkeypatch):
    """What kombu's Redis transport makes of them: the connection class and keyword arguments
    of redis-py's SSLConnection (no connection is opened)."""
    import redis
    from kombu import Connection

    monkeypatch.setenv("CELERY_BROKER_URL", f"rediss://:pw@queue.internal:6380/1?ssl_ca_certs={CA}")
    url, options = env_broker("CELERY_BROKER_URL")
    conn = Connection(url, ssl=options)
    # A channel without its __init__, which would connect: _connparams only reads settings.
    channel = object.__new__(conn.transport.Channel)
    channel.connection = conn.transport
    params = channel._connparams()
    assert issubclass(params["connection_class"], redis.SSLConnection)
    assert params["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert params["ssl_check_hostname"] is True
    assert params["ssl_ca_certs"] == CA
    assert (params["host"], params["port"], params["db"]) == ("queue.internal", 6380, 1)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://queue.internal", "use redis://"),
        ("unix:///run/redis/queue.sock?db=0", "use redis://"),
        ("redis://:pw@queue.internal:notaport/0", "bad port"),
        ("redis://:pw@queue.internal:6379/orders", "database number"),
        ("redis://:pw@queue.internal:6379/0?ssl_ca_certs=/ca.crt", "need rediss://"),
        ("rediss://:pw@q:6380/0?ssl_cert_reqs=none", "ssl_cert_reqs must be 'required'"),
        ("rediss://:pw@q:6380/0?ssl_cert_reqs=optional", "ssl_cert_reqs must be 'required'"),
        ("rediss://:pw@q:6380/0?ssl_check_hostname=false", "ssl_check_hostname must be true"),
        ("rediss://:pw@q:6380/0?ssl_ca_certs=ca.crt", "absolute path"),
        ("rediss://:pw@q:6380/0?ssl_keyfile=/k", "unknown parameter 'ssl_keyfile'"),
        ("rediss://:pw@q:6380/0?ssl_ca_certs=/a&ssl_ca_certs=/b", "given twice"),
    ],
)
def test_broker_malformed(monkeypatch, value, why):
    monkeypatch.setenv("CELERY_BROKER_URL", value)
    with pytest.raises(ImproperlyConfigured, match="CELERY_BROKER_URL is malformed") as exc:
        env_broker("CELERY_BROKER_URL")
    assert why in str(exc.value)
    assert "pw" not in str(exc.value)


def test_broker_missing(monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    with pytest.raises(ImproperlyConfigured, match="CELERY_BROKER_URL is not set"):
        env_broker("CELERY_BROKER_URL")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("smtp://mail.internal:25", ("mail.internal", 25, "", "", False, False)),
        ("smtp://mail.internal", ("mail.internal", 25, "", "", False, False)),
        (
            "smtp+tls://orders%40shop.example:s%2Fecret@smtp.example.org:587",
            ("smtp.example.org", 587, "orders@shop.example", "s/ecret", True, False),
        ),
        ("smtp+tls://u:p@smtp.example.org", ("smtp.example.org", 587, "u", "p", True, False)),
        ("smtp+ssl://u:p@smtp.example.org:465", ("smtp.example.org", 465, "u", "p", False, True)),
    ],
)
def test_email_url(monkeypatch, value, expected):
    monkeypatch.setenv("EMAIL_URL", value)
    config = env_email("EMAIL_URL")
    assert config["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert expected == tuple(
        config[k]
        for k in (
            "EMAIL_HOST",
            "EMAIL_PORT",
            "EMAIL_HOST_USER",
            "EMAIL_HOST_PASSWORD",
            "EMAIL_USE_TLS",
            "EMAIL_USE_SSL",
        )
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "mail.internal:25",
        "consolemail://",
        "memorymail://",
        "smtps://u:secret@smtp.example.org",
        "smtp://u:secret@smtp.example.org:notaport",
        "smtp://:25",
        "smtp://u:secret@smtp.example.org:25?EMAIL_USE_TLS=1",
        "smtp://u:secret@smtp.example.org:25/path",
    ],
)
def test_email_url_malformed(monkeypatch, value):
    monkeypatch.setenv("EMAIL_URL", value)
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL is malformed") as exc:
        env_email("EMAIL_URL")
    assert "secret" not in str(exc.value)


def test_email_url_missing(monkeypatch):
    monkeypatch.delenv("EMAIL_URL", raising=False)
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL is not set"):
        env_email("EMAIL_URL")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "orders@shop.example.test"),
        ("", "orders@shop.example.test"),
        ("shop@example.org", "shop@example.org"),
        ("Example Shop <shop@example.org>", "Example Shop <shop@example.org>"),
    ],
)
def test_default_from_email(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("DJANGO_DEFAULT_FROM_EMAIL", raising=False)
    else:
        monkeypatch.setenv("DJANGO_DEFAULT_FROM_EMAIL", value)
    hosts = ["shop.example.test", "www.shop.example.test"]
    assert env_from_email("DJANGO_DEFAULT_FROM_EMAIL", hosts) == expected


def test_default_from_email_of_a_subdomain_pattern(monkeypatch):
    monkeypatch.delenv("DJANGO_DEFAULT_FROM_EMAIL", raising=False)
    assert env_from_email("X", [".example.org"]) == "orders@example.org"


@pytest.mark.parametrize(
    "value", ["not an address", "a@", "Shop <shop@example.org", "a@b\nBcc: x@y"]
)
def test_default_from_email_malformed(monkeypatch, value):
    monkeypatch.setenv("DJANGO_DEFAULT_FROM_EMAIL", value)
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEFAULT_FROM_EMAIL is malformed"):
        env_from_email("DJANGO_DEFAULT_FROM_EMAIL", ["shop.example.test"])
