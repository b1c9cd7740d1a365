"""Which address is the client?

REMOTE_ADDR is the peer that connected to gunicorn. Only when that peer is a trusted proxy
(settings.TRUSTED_PROXIES, from DJANGO_TRUSTED_PROXIES) is X-Forwarded-For believed, and then
it is read right to left: each hop appended by a trusted proxy is skipped and the first
untrusted address is the client. Anything left of it was written by the client and is never
believed. A gunicorn bound to a unix socket sees an empty REMOTE_ADDR; that peer (nginx on the
same host) is trusted only if the operator lists "unix"."""

import ipaddress

from django.conf import settings

UNIX_PEER = "unix"


def _parse(value: str):
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(addr) -> bool:
    proxies = settings.TRUSTED_PROXIES
    if addr == UNIX_PEER:
        return UNIX_PEER in proxies
    return any(
        not isinstance(net, str) and addr.version == net.version and addr in net for net in proxies
    )


def client_ip(request) -> str:
    remote = (request.META.get("REMOTE_ADDR") or "").strip()
    peer = _parse(remote) if remote else UNIX_PEER
    if peer is None:
        return remote
    if not _trusted(peer):
        return str(peer)
    hops = [h for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    client = str(peer)
    for hop in reversed(hops):
        addr = _parse(hop)
        if addr is None:
            # Garbage in the chain: stop at the last address a trusted proxy vouched for.
            break
        client = str(addr)
        if not _trusted(addr):
            break
    return client
