"""Helpers of the scenario `project`: the hello project on one all-in-one host.

Secrets come from the files the roles wrote on the host (the release's env file, Redis's
auth.conf), never from a copy of the vault.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ROOT = "/srv/hello"
UNIT = "hello-gunicorn"


@pytest.fixture(scope="module")
def hostvars(host):
    return host.ansible.get_variables()


@pytest.fixture(scope="module")
def site(hostvars):
    """(address, domain, CA file) of the site as a client sees it."""
    return str(hostvars["ansible_host"]), hostvars["site_domain"], str(REPO / ".state" / hostvars["stack_env"] / "ca.crt")


def https_get(site, path: str) -> tuple[int, dict, bytes]:
    """GET https://<domain><path> from the control node, over the host's address: status, headers, body."""
    address, domain, ca = site
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection((address, 443), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=domain) as tls:
        conn = http.client.HTTPConnection(domain, timeout=10)
        conn.sock = tls
        conn.request("GET", path, headers={"Host": domain})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def notes(site) -> dict:
    status, headers, body = https_get(site, "/notes/")
    assert status == 200, body[:300]
    assert headers["content-type"] == "application/json"
    return json.loads(body)


def release_env(host) -> dict:
    """The live release's env file."""
    return dict(re.findall(r"^([A-Z_]+)='(.*)'$", host.check_output(f"cat {ROOT}/current/env"), re.M))


def redis_get(host, key: str) -> str:
    auth = host.file("/etc/redis/auth.conf").content_string
    password = re.findall(r">(\S+)", re.search(r"^user default .*$", auth, re.M).group(0))[0]
    cli = "redis-cli --no-auth-warning -s /run/redis/redis-server.sock"
    return host.check_output(f"REDISCLI_AUTH='{password}' {cli} GET '{key}'")


def psql(host, sql: str, port: int = 5432, db: str = "hello") -> str:
    """A query as postgres over the unix socket (PgBouncer's admin console on 6432, db pgbouncer)."""
    return host.check_output(f"runuser -u postgres -- psql -X -h /var/run/postgresql -p {port} -d {db} -Atc \"{sql}\"")
