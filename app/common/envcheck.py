"""Strict readers for the production environment (docs/decisions.md §3).

Each reader raises ImproperlyConfigured naming the key when the key is missing or malformed,
so a bad env file stops start-up with a message that says what to fix."""

import ipaddress
import os
import re
import ssl
from email.utils import parseaddr
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import environ
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MISSING = object()


def _raw(key: str, default=_MISSING) -> str:
    value = os.environ.get(key)
    if value is None:
        if default is not _MISSING:
            return default
        raise ImproperlyConfigured(f"{key} is not set: add it to the release's env file.")
    return value.strip()


def _bad(key: str, why: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{key} is malformed: {why}.")


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _weak_key(value: str) -> bool:
    # The same bar as Django's security.W009 and W025, so check --deploy stays clean.
    return len(value) < 50 or len(set(value)) < 5 or value.startswith("django-insecure")


def env_secret_key(key: str) -> str:
    value = _raw(key)
    if _weak_key(value):
        raise _bad(key, "use at least 50 random characters (not 'django-insecure...')")
    return value


def env_secret_key_fallbacks(key: str, current: str) -> list[str]:
    """Previous secret keys, comma separated, still accepted for sessions and signed values
    while a key rotation settles (Django's SECRET_KEY_FALLBACKS). Optional: empty or unset
    means none."""
    fallbacks = _csv(_raw(key, ""))
    for n, value in enumerate(fallbacks, 1):
        if _weak_key(value):
            raise _bad(
                key,
                f"key {n} is weak: use at least 50 random characters (not 'django-insecure...')",
            )
        if value == current:
            raise _bad(key, f"key {n} is the current DJANGO_SECRET_KEY; list only previous keys")
    return fallbacks


def env_hosts(key: str) -> list[str]:
    hosts = _csv(_raw(key))
    if not hosts:
        raise _bad(key, "give at least one host name, comma separated")
    for host in hosts:
        if "/" in host or " " in host or host == "*":
            raise _bad(key, f"{host!r} is not a host name")
    return hosts


def env_origins(key: str) -> list[str]:
    origins = _csv(_raw(key))
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("",):
            raise _bad(key, f"{origin!r} is not an origin like https://shop.example.org")
    return origins


def env_release(key: str) -> str:
    value = _raw(key)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", value):
        raise _bad(key, "use 1-128 characters from A-Z a-z 0-9 . _ + -")
    return value


def env_path(key: str) -> str:
    value = _raw(key)
    if not value.startswith("/"):
        raise _bad(key, "give an absolute path")
    return value


def env_choice(key: str, choices: tuple[str, ...], default=_MISSING) -> str:
    value = _raw(key, default).upper()
    if value not in choices:
        raise _bad(key, f"use one of {', '.join(choices)}")
    return value


def env_int(key: str, minimum: int, default=_MISSING) -> int:
    value = str(_raw(key, default))
    if not value.isdigit() or int(value) < minimum:
        raise _bad(key, f"use a whole number, at least {minimum}")
    return int(value)


def env_bool(key: str, default=_MISSING) -> bool:
    value = _raw(key, default)
    if isinstance(value, bool):
        return value
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _bad(key, "use true or false")


def env_db(key: str) -> dict:
    value = _raw(key)
    parts = urlsplit(value)
    if parts.scheme not in ("postgres", "postgresql", "pgsql") or not parts.path.strip("/"):
        raise _bad(key, "use postgres://USER:PASSWORD@HOST:PORT/NAME")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
        config = environ.Env.db_url_config(value)
    except ValueError as exc:
        raise _bad(key, "use postgres://USER:PASSWORD@HOST:PORT/NAME") from exc
    config["ENGINE"] = "django.db.backends.postgresql"
    return config


def env_redis(key: str) -> str:
    value = _raw(key)
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018
    except ValueError as exc:
        raise _bad(key, "bad port") from exc
    if parts.scheme in ("redis", "rediss") and parts.hostname:
        return value
    if parts.scheme == "unix" and parts.path:
        return value
    raise _bad(key, "use redis://:PASSWORD@HOST:PORT/DB or unix:///path?db=0")


def env_proxies(key: str) -> tuple:
    """CIDRs of proxies whose X-Forwarded-For is believed; "unix" trusts a unix-socket peer
    (gunicorn gives it an empty REMOTE_ADDR). Empty means: trust nobody."""
    proxies = []
    for item in _csv(_raw(key)):
        if item == "unix":
            proxies.append("unix")
            continue
        try:
            proxies.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise _bad(key, f"{item!r} is neither a CIDR nor 'unix'") from exc
    return tuple(proxies)


# TLS query parameters of a rediss:// broker URL: the form REDIS_URL uses too (release_facts.yml).
_BROKER_TLS_PARAMS = ("ssl_cert_reqs", "ssl_check_hostname", "ssl_ca_certs")


def env_broker(key: str) -> tuple[str, dict | None]:
    """The Celery broker: redis://[USER]:PASSWORD@HOST:PORT/DB, or rediss:// with the TLS
    options as query parameters (ssl_cert_reqs=required, ssl_check_hostname=true,
    ssl_ca_certs=/path/ca.crt).

    Returns the URL without its query and the TLS options for CELERY_BROKER_USE_SSL (None for
    redis://). kombu would parse the query itself, but a rediss:// URL whose options it does not
    recognise silently falls back to CERT_NONE; so the options are checked here, TLS that does
    not verify the certificate and the host name is refused, and the dict goes to redis-py's
    SSLConnection as it is (kombu passes Connection(ssl=...) through unchanged)."""
    usage = "use redis://:PASSWORD@HOST:PORT/DB or rediss://...?ssl_ca_certs=/path/ca.crt"
    value = _raw(key)
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise _bad(key, "bad port") from exc
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or parts.fragment:
        raise _bad(key, usage)
    db = parts.path.strip("/")
    if db and not (db.isdigit() and int(db) < 16):
        raise _bad(key, "the path is the database number, /0 to /15")
    params: dict[str, str] = {}
    for name, param in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _BROKER_TLS_PARAMS:
            raise _bad(key, f"unknown parameter {name!r}; only {', '.join(_BROKER_TLS_PARAMS)}")
        if name in params:
            raise _bad(key, f"{name} is given twice")
        params[name] = param
    url = urlunsplit(parts._replace(query=""))
    if parts.scheme == "redis":
        if params:
            raise _bad(key, "TLS parameters need rediss://")
        return url, None
    if params.get("ssl_cert_reqs", "required").lower() not in ("required", "cert_required"):
        raise _bad(key, "ssl_cert_reqs must be 'required': the certificate is always verified")
    if params.get("ssl_check_hostname", "true").lower() not in _TRUE:
        raise _bad(key, "ssl_check_hostname must be true: the host name is always verified")
    options = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    if "ssl_ca_certs" in params:
        if not params["ssl_ca_certs"].startswith("/"):
            raise _bad(key, "ssl_ca_certs must be an absolute path")
        options["ssl_ca_certs"] = params["ssl_ca_certs"]
    # Without ssl_ca_certs, redis-py verifies against the system's trusted CAs.
    return url, options


# scheme: (default port, EMAIL_USE_TLS (STARTTLS), EMAIL_USE_SSL (TLS from the start))
_EMAIL_SCHEMES = {
    "smtp": (25, False, False),
    "smtp+tls": (587, True, False),
    "smtp+ssl": (465, False, True),
}


def env_email(key: str) -> dict:
    """The SMTP server, in django-environ's form: smtp://HOST:25 (plain),
    smtp+tls://USER:PASSWORD@HOST:587 (STARTTLS) or smtp+ssl://USER:PASSWORD@HOST:465 (TLS from
    the start); user and password percent-encoded. Returns the EMAIL_* settings. Anything
    else (console, file or memory backends, query options) is refused: production sends mail.
    Messages never include the value, which may hold a password."""
    usage = "use smtp://HOST:PORT, smtp+tls://USER:PASSWORD@HOST:PORT or smtp+ssl://..."
    value = _raw(key)
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError as exc:
        raise _bad(key, "bad port") from exc
    if parts.scheme not in _EMAIL_SCHEMES or not parts.hostname:
        raise _bad(key, usage)
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise _bad(key, f"no path or query: {usage}")
    try:
        config = environ.Env.email_url_config(value)
    except (ValueError, ImproperlyConfigured) as exc:
        raise _bad(key, usage) from exc
    default_port, use_tls, use_ssl = _EMAIL_SCHEMES[parts.scheme]
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": config["EMAIL_HOST"],
        "EMAIL_PORT": port or default_port,
        "EMAIL_HOST_USER": config["EMAIL_HOST_USER"] or "",
        "EMAIL_HOST_PASSWORD": config["EMAIL_HOST_PASSWORD"] or "",
        "EMAIL_USE_TLS": use_tls,
        "EMAIL_USE_SSL": use_ssl,
    }


def env_from_email(key: str, hosts: list[str]) -> str:
    """The sender of the service's mail: an address, optionally with a name
    ("Orders <orders@example.org>"). Optional: orders@ the first allowed host."""
    value = _raw(key, "")
    if not value:
        return f"orders@{hosts[0].lstrip('.')}"
    name, address = parseaddr(value)
    try:
        if any(c in value for c in "\r\n") or not address:
            raise ValidationError("no address")
        if value != address and not value.endswith(f"<{address}>"):
            raise ValidationError("neither an address nor Name <address>")
        validate_email(address)
    except ValidationError as exc:
        raise _bad(key, "use an address like orders@example.org or Orders <orders@...>") from exc
    return value
