import ipaddress

import pytest
from django.test import RequestFactory, override_settings

from common.net import client_ip

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


def ip(remote, xff=None, proxies=PROXIES):
    meta = {"REMOTE_ADDR": remote}
    if xff is not None:
        meta["HTTP_X_FORWARDED_FOR"] = xff
    with override_settings(TRUSTED_PROXIES=proxies):
        return client_ip(RequestFactory().get("/", **meta))


@pytest.mark.parametrize(
    "remote,xff,expected",
    [
        ("203.0.113.9", None, "203.0.113.9"),
        # Untrusted peer: its X-Forwarded-For is the client's own claim, ignored.
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        # Trusted proxy: the address it appended is the client.
        ("10.0.0.5", "198.51.100.1", "198.51.100.1"),
        # Spoofed entries left of the real one are never believed.
        ("10.0.0.5", "1.2.3.4, 198.51.100.1", "198.51.100.1"),
        # Chains of trusted proxies are skipped right to left.
        ("10.0.0.5", "198.51.100.1, 10.9.9.9", "198.51.100.1"),
        ("10.0.0.5", "198.51.100.1:4711", "198.51.100.1"),
        ("10.0.0.5", "[2001:db8::1]:443", "2001:db8::1"),
        # Garbage stops the walk at the last address a trusted proxy vouched for.
        ("10.0.0.5", "198.51.100.1, nonsense", "10.0.0.5"),
        ("10.0.0.5", "", "10.0.0.5"),
        ("::1", "198.51.100.7", "198.51.100.7"),
    ],
)
def test_client_ip(remote, xff, expected):
    assert ip(remote, xff) == expected


def test_unix_socket_peer_trusted_only_when_listed():
    # gunicorn on a unix socket gives an empty REMOTE_ADDR.
    assert ip("", "198.51.100.1") == "unix"
    assert ip("", "198.51.100.1", proxies=(*PROXIES, "unix")) == "198.51.100.1"


def test_nothing_trusted_by_default():
    assert ip("127.0.0.1", "198.51.100.1", proxies=()) == "127.0.0.1"
