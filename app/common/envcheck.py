"""Strict readers for the production environment (docs/decisions.md §3).

Each reader raises ImproperlyConfigured naming the key when the key is missing or malformed,
so a bad env file stops start-up with a message that says what to fix."""

import ipaddress
import os
import re
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

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
