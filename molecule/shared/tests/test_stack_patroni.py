"""PostgreSQL high availability (docs/decisions.md §14, a draft): a Patroni cluster of three or
more db hosts with etcd, one leader and streaming replicas (one synchronous), Debian's cluster
tooling kept out, health checks open and changes refused without the REST API's password, the
etcd and Patroni ports refused to hosts outside their groups, and each app host's HAProxy
routing to the leader only. Skipped unless the scenario has three or more db hosts."""

from __future__ import annotations

import json
import re

import pytest

from conftest import address_of, groups_of, in_a_cluster, inventory_groups, other_host

REST = 8008


@pytest.fixture(scope="module")
def db_hosts(host):
    if not in_a_cluster(host):
        pytest.skip("fewer than three db hosts: no Patroni")
    return inventory_groups(host)["db"]


def _cluster(db) -> dict:
    out = db.check_output(f"curl -sf --cacert /etc/ssl/stack/ca.crt https://{address_of(db)}:{REST}/cluster")
    return json.loads(out)


def test_one_leader_and_streaming_replicas_one_synchronous(host, db_hosts):
    if "db" not in groups_of(host):
        pytest.skip("not a db host")
    members = {m["name"]: m for m in _cluster(host)["members"]}
    assert set(members) == set(db_hosts)
    roles = sorted(m["role"] for m in members.values())
    assert roles.count("leader") == 1, members
    assert roles.count("sync_standby") == 1, members
    replicas = [m for m in members.values() if m["role"] != "leader"]
    # Patroni 4 says streaming, 3.0 (Debian 12) running: the leader's view is the same on both
    assert all(m["state"] in ("streaming", "running") for m in replicas), members
    leader = next(n for n, m in members.items() if m["role"] == "leader")
    rows = other_host(leader).check_output(
        "runuser -u postgres -- psql -X -Atc \"select application_name, state, sync_state from pg_stat_replication\"")
    streams = sorted(r.split("|") for r in rows.splitlines())
    assert [r[0] for r in streams] == sorted(n for n in members if n != leader), rows
    assert all(r[1] == "streaming" for r in streams), rows
    assert sorted(r[2] for r in streams) == ["async", "sync"] if len(streams) == 2 else True, rows


def test_debian_cluster_tooling_stays_out(host, db_hosts):
    if "db" not in groups_of(host):
        pytest.skip("not a db host")
    assert host.check_output("pg_lsclusters --no-header") == ""
    assert host.service("patroni.service").is_running
    version = host.check_output("ls /usr/lib/postgresql").split()[0]
    assert host.run(f"systemctl is-enabled postgresql@{version}-main.service").stdout.strip() == "masked"
    # the postmaster is Patroni's child, not a postgresql@ unit's
    assert "patroni.service" in host.check_output("cat /proc/$(pgrep -o -u postgres -x postgres)/cgroup")


def test_health_checks_open_changes_need_the_password(host, db_hosts):
    if "db" not in groups_of(host):
        pytest.skip("not a db host")
    base = f"https://{address_of(host)}:{REST}"
    code = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' --cacert /etc/ssl/stack/ca.crt {base}/health")
    assert code == "200"
    # a restart asked without the password is refused, and nothing restarts
    code = host.check_output(
        f"curl -s -o /dev/null -w '%{{http_code}}' --cacert /etc/ssl/stack/ca.crt -X POST -d '{{}}' {base}/restart")
    assert code == "401"


def test_etcd_is_healthy_over_mutual_tls(host, db_hosts):
    if "db" not in groups_of(host):
        pytest.skip("not a db host")
    a = address_of(host)
    tls = "--cacert=/etc/ssl/stack/ca.crt --cert=/etc/ssl/stack/etcd.crt --key=/etc/ssl/stack/etcd.key"
    assert host.run(f"etcdctl --endpoints=https://{a}:2379 {tls} endpoint health --cluster").rc == 0
    # without a client certificate the member refuses
    no_cert = f"etcdctl --endpoints=https://{a}:2379 --cacert=/etc/ssl/stack/ca.crt --dial-timeout=3s endpoint health"
    assert host.run(no_cert).rc != 0


@pytest.mark.parametrize("port", [2379, 2380])
def test_etcd_ports_refused_to_app_hosts_open_to_db_hosts(host, db_hosts, port):
    if "app" not in groups_of(host) or "db" in groups_of(host):
        pytest.skip("not an app host outside the db group")
    target = address_of(other_host(db_hosts[0]))
    probe = f"timeout 3 bash -c 'exec 3<>/dev/tcp/{target}/{port}'"
    assert host.run(probe).rc != 0
    assert other_host(db_hosts[1]).run(probe).rc == 0


def test_app_host_routes_to_the_leader_only(host, db_hosts):
    if "app" not in groups_of(host):
        pytest.skip("not an app host")
    leader = next(m["name"] for m in _cluster(other_host(db_hosts[0]))["members"] if m["role"] == "leader")
    stat = host.check_output(
        "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
        "s.sendall(b'show stat\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())\"")
    up = [r.split(",")[1] for r in stat.splitlines() if ",UP," in r and not r.split(",")[1].isupper()]
    assert up == [leader]
    # PgBouncer here reaches a primary through it
    assert host.check_output(
        "orders-manage shell -c \"from django.db import connection; c = connection.cursor(); "
        "c.execute('select pg_is_in_recovery()'); print(c.fetchone()[0])\"").strip().splitlines()[-1] == "False"


@pytest.mark.parametrize(("group", "unit", "limit"), [
    ("db", "patroni.service", 5.0),
    ("db", "etcd.service", 5.0),
    ("app", "haproxy.service", 5.0),
    ("app", "pgbouncer.service", 5.0),
])
def test_units_of_the_cluster_are_sandboxed(host, db_hosts, group, unit, limit):
    if group not in groups_of(host):
        pytest.skip(f"not in {group}")
    assert host.service(unit).is_running
    out = host.check_output(f"systemd-analyze security --no-pager {unit} | tail -1")
    assert float(re.search(r"exposure level for \S+: ([0-9.]+)", out).group(1)) <= limit, out
