"""The common role: firewall, time sync, journald, unattended upgrades, apt proxy."""

from __future__ import annotations

import pytest

from conftest import address_of, groups_of, inventory_groups, other_host, tcp_connects, throwaway_listener

PROBE_PORT = 18080  # no group opens it


def test_firewall_unit_enabled_and_active(host):
    svc = host.service("stack-firewall.service")
    assert svc.is_enabled
    assert svc.is_running


def test_firewall_table_drops_by_default(host):
    chain = host.run("nft list chain inet stack input")
    assert chain.rc == 0, chain.stderr
    assert "policy drop" in chain.stdout


def test_unlisted_port_is_unreachable_from_outside(host):
    with throwaway_listener(host, PROBE_PORT):
        # the listener works on the host itself...
        local = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{PROBE_PORT}/")
        assert local.stdout == "200", local.stdout
        # ...and is not reachable from the control node, on any interface of the host
        assert not tcp_connects(address_of(host), PROBE_PORT)


def test_ssh_is_open_from_outside(host):
    assert tcp_connects(address_of(host), 22)


# Which groups may reach which ports of a host, stated here independently of the role:
# (group of the host, port variable, its default, the groups allowed in).
PEER_PORTS = [
    ("app", "gunicorn_port", 8000, "web"),
    ("db", "postgresql_port", 5432, "app"),
    ("cache", "redis_port", 6379, "app"),
    ("cache", "redis_queue_port", 6380, "app"),
    ("db", "pgbackrest_tls_port", 8432, "backup"),
    ("backup", "pgbackrest_tls_port", 8432, "db"),
]
# one db host: PgBouncer there, for the app hosts
SINGLE_DB_PORTS = [("db", "pgbouncer_port", 6432, "app")]
# three or more (Patroni, etcd on the db hosts; PgBouncer on each app host, for itself only):
# replication and pg_rewind between db hosts, Patroni's REST API to its peers and the app hosts'
# HAProxy, etcd's client and peer ports between members
CLUSTER_PORTS = [
    ("db", "postgresql_port", 5432, "db"),
    ("db", "patroni_restapi_port", 8008, "app"),
    ("db", "patroni_restapi_port", 8008, "db"),
    ("db", "etcd_client_port", 2379, "db"),
    ("db", "etcd_peer_port", 2380, "db"),
]


def test_group_ports_open_only_to_their_peer_groups(host):
    """A port a group needs answers that group's other hosts, and not the control node."""
    hv = host.ansible.get_variables()
    me, groups = hv["inventory_hostname"], inventory_groups(host)
    ports = PEER_PORTS + (CLUSTER_PORTS if len(groups.get("db", [])) >= 3 else SINGLE_DB_PORTS)
    cases = [
        (int(hv.get(var, default)), peer)
        for group, var, default, allowed in ports
        if group in groups_of(host)
        for peer in groups.get(allowed, [])
        if peer != me
    ]
    if not cases:
        pytest.skip("no peer host on another machine in this scenario (all-in-one talks over loopback)")
    for port, peer in cases:
        with throwaway_listener(host, port):
            probe = other_host(peer).run(f"timeout 3 bash -c '</dev/tcp/{address_of(host)}/{port}'")
            assert probe.rc == 0, f"{peer} (allowed) cannot reach {me}:{port}"
            assert not tcp_connects(address_of(host), port), f"control node reached {me}:{port}"


def test_time_sync_configured_and_enabled(host):
    assert host.service("systemd-timesyncd.service").is_enabled
    conf = host.run("systemd-analyze cat-config systemd/timesyncd.conf").stdout
    ntp = [line for line in conf.splitlines() if line.startswith("NTP=")]
    assert ntp and "pool.ntp.org" in ntp[-1], ntp


def test_journal_is_bounded_and_persistent(host):
    conf = host.run("systemd-analyze cat-config systemd/journald.conf").stdout
    max_use = host.ansible.get_variables().get("common_journald_system_max_use", "512M")
    assert f"SystemMaxUse={max_use}" in conf
    assert "Storage=persistent" in conf


def test_unattended_upgrades_take_security_updates_only(host):
    dump = host.run("apt-config dump").stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    origins = [line for line in dump.splitlines() if line.startswith("Unattended-Upgrade::Origins-Pattern::")]
    assert origins, "no Origins-Pattern configured"
    assert all("-security" in line for line in origins), origins


def test_unattended_upgrades_never_restart_the_data_tier(host):
    """PostgreSQL, PgBouncer and Redis restart only through the planned path: unattended-upgrades
    holds their packages back (and so would upgrade neither postgresql-17 nor redis-server)."""
    dump = host.run("apt-config dump").stdout
    held = {line.split(" ", 1)[1].strip('";') for line in dump.splitlines()
            if line.startswith("Unattended-Upgrade::Package-Blacklist:: ")}
    assert {"^postgresql-[0-9]+$", "^pgbouncer$", "^redis-server$", "^patroni$", "^etcd-server$", "^haproxy$"} <= held, held
    probe = host.run("python3 -c \"import re, sys; pats = sys.argv[1:]; "
                     "print([n for n in ('postgresql-17', 'pgbouncer', 'redis-server', 'nginx') "
                     "if any(re.match(p, n) for p in pats)])\" " + " ".join(f"'{p}'" for p in sorted(held)))
    assert probe.stdout.strip() == "['postgresql-17', 'pgbouncer', 'redis-server']", probe.stdout + probe.stderr


def test_apt_uses_the_configured_proxy(host):
    proxy = host.ansible.get_variables()["common_apt_proxy"]
    assert proxy, "scenarios set common_apt_proxy"
    assert f'Acquire::http::Proxy "{proxy}";' in host.run("apt-config dump").stdout
