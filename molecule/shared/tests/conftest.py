"""Shared testinfra tree: every scenario runs these files against each of its hosts.

Tests look at the host from outside where that is what matters (the control node
connects over the bridge; other hosts connect over their own network), and every
"must be refused" case sits next to the "must work" case that proves the probe works.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
import testinfra

from drill import ca_file, scenario_inventory


@pytest.fixture(scope="module")
def hostvars(host):
    return host.ansible.get_variables()


ALL_GROUPS = {"web", "app", "db", "cache"}


def groups_of(host) -> set[str]:
    """The host's inventory groups; all of them on a backend without an inventory (ssh://)."""
    try:
        return set(host.ansible.get_variables().get("group_names", []))
    except (AttributeError, RuntimeError, TypeError):
        return set(ALL_GROUPS)


def need(host, group: str) -> None:
    """Skip a test that is about a group this host is not in."""
    if group not in groups_of(host):
        pytest.skip(f"{host.backend.get_hostname()} is not in group {group}")


def in_a_cluster(host) -> bool:
    """Three or more db hosts: a Patroni cluster (docs/decisions.md §14)."""
    try:
        return len(inventory_groups(host).get("db", [])) >= 3
    except (AttributeError, RuntimeError, TypeError):
        return False


def pooler_group(host) -> str:
    """Where PgBouncer runs: the db host, or each app host in a Patroni cluster."""
    return "app" if in_a_cluster(host) else "db"


def direct_port(host) -> int:
    """PostgreSQL itself as the pooler's host reaches it: 5432 there, or the app host's HAProxy
    (the leader) in a Patroni cluster."""
    return 5000 if in_a_cluster(host) else 5432


@pytest.fixture
def all_in_one(host):
    """(host, address, site domain, CA file) of an all-in-one host: the drills run there."""
    if not ALL_GROUPS <= groups_of(host):
        pytest.skip("the drills run on the all-in-one scenario (default)")

    hv = host.ansible.get_variables()
    return host, address_of(host), hv["site_domain"], ca_file(hv)


def address_of(host) -> str:
    v = host.ansible.get_variables()
    return str(v.get("stack_private_address") or v["ansible_host"])


def other_host(name: str):
    """A testinfra host for another inventory host of the scenario."""
    inventory = scenario_inventory()
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}", sudo=True)


def inventory_groups(host) -> dict[str, list[str]]:
    return host.ansible.get_variables().get("groups", {})


def tcp_connects(address: str, port: int, timeout: float = 2.0) -> bool:
    """From the control node: does a TCP handshake to address:port complete?"""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def throwaway_listener(host, port: int):
    """A TCP listener on every interface of ``host`` for the duration of the block.

    When a service of the stack already listens on the port (on the host's private address),
    it is the probe: a second listener could not bind, and the service is what must be reached.
    """
    if host.run(f"ss -Hltn 'sport = :{port}' | grep -qvE '127\\.0\\.0\\.1:|\\[::1\\]:'").rc == 0:
        yield
        return
    unit = f"probe-listener-{port}"
    host.run(f"systemctl stop {unit} 2>/dev/null; systemctl reset-failed {unit} 2>/dev/null")
    started = host.run(
        f"systemd-run --unit={unit} --property=RuntimeMaxSec=120 "
        f"/usr/bin/python3 -m http.server {port} --bind 0.0.0.0 --directory /usr/share"
    )
    assert started.rc == 0, started.stderr
    try:
        for _ in range(50):
            if host.socket(f"tcp://0.0.0.0:{port}").is_listening:
                break
            time.sleep(0.1)
        assert host.socket(f"tcp://0.0.0.0:{port}").is_listening, f"probe listener on {port} did not start"
        yield
    finally:
        host.run(f"systemctl stop {unit}")
