"""The hello project (molecule/project/hello: startproject + a `notes` app) deployed by the
roles with variables only. Only what is specific to a second project is tested here; the orders
stack is covered by the other scenarios."""

import json
import re

import pytest

from conftest import ROOT, UNIT, https_get, notes, psql, redis_get, release_env


def test_migrations_ran_and_the_table_belongs_to_the_owner_role(host):
    assert psql(host, "select tableowner from pg_tables where tablename = 'notes_note'") == "hello"
    assert psql(host, "select count(*) from django_migrations where app = 'notes' and name = '0001_initial'") == "1"


def test_a_request_through_nginx_reaches_the_project(site):
    status, headers, body = https_get(site, "/notes/")
    assert status == 200
    # nginx adds the stack's headers to the project's answers
    assert headers["strict-transport-security"].startswith("max-age=")
    data = json.loads(body)
    assert "Added by the post-migrate hook" in [n["text"] for n in data["notes"]]
    # an unknown path is the project's own 404 (DEBUG off), proxied by nginx
    assert https_get(site, "/no-such-page/")[0] == 404


def test_admin_css_is_served_by_nginx_from_the_release(host, site):
    manifest = json.loads(host.check_output(f"cat {ROOT}/current/static/staticfiles.json"))
    hashed = manifest["paths"]["admin/css/base.css"]
    status, headers, body = https_get(site, f"/static/{hashed}")
    assert status == 200
    assert headers["content-type"] == "text/css"
    assert "immutable" in headers["cache-control"]
    assert body == host.file(f"{ROOT}/current/static/{hashed}").content
    # the project itself serves no static file (DEBUG off): nginx answered from disk
    assert https_get(site, "/static/admin/css/no-such-file.css")[0] == 404


def test_requests_go_through_pgbouncer(host, site):
    notes(site)  # a worker now holds its persistent connection (CONN_MAX_AGE)
    main_pid = host.check_output(f"systemctl show -P MainPID {UNIT}.service")
    workers = set(host.check_output(f"ps -o pid= --ppid {main_pid}").split()) | {main_pid}
    # the project's processes' connections, by destination port
    conns = host.check_output("ss -Htnp state established '( dport = :6432 or dport = :5432 )'")
    ports = {}
    for line in conns.splitlines():
        pids = set(re.findall(r"pid=(\d+)", line))
        if pids & workers:
            local, peer = line.split()[2:4]
            ports.setdefault(peer.rsplit(":", 1)[1], set()).add(local.rsplit(":", 1)[1])
    assert set(ports) == {"6432"}, conns
    # PgBouncer sees those very connections as clients of the project's database
    out = host.check_output("runuser -u postgres -- psql -X -h /var/run/postgresql -p 6432 -d pgbouncer -A -c 'SHOW CLIENTS'")
    header, *rows = out.splitlines()
    clients = [dict(zip(header.split("|"), row.split("|"), strict=False)) for row in rows if "|" in row]
    hello_ports = {c["port"] for c in clients if c["database"] == "hello" and c["addr"] == "127.0.0.1"}
    assert ports["6432"] & hello_ports, out


def test_the_project_caches_in_redis(host, site):
    first = notes(site)["views"]
    second = notes(site)["views"]
    assert second == first + 1
    assert int(redis_get(host, "hello:1:notes:views")) >= second


def test_hooks_ran_before_and_after_migrate(host):
    release = release_env(host)["DJANGO_RELEASE"]
    before = json.loads(redis_get(host, "hello:hook:pre_migrate"))
    after = json.loads(redis_get(host, "hello:hook:post_migrate"))
    assert before["release"] == after["release"] == release
    # the scenario's fresh host: notes' migration was still to run before, none after
    assert "notes.0001_initial" in before["unapplied"]
    assert after["unapplied"] == []
    assert before["time"] < after["time"]


def test_extra_env_key_reaches_the_workers(host, site):
    assert release_env(host)["HELLO_GREETING"] == "Hello from the inventory"
    main_pid = host.check_output(f"systemctl show -P MainPID {UNIT}.service")
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{main_pid}/environ")
    assert "HELLO_GREETING=Hello from the inventory" in environ.splitlines()
    assert "DJANGO_SETTINGS_MODULE=hello.production" in environ.splitlines()
    assert notes(site)["greeting"] == "Hello from the inventory"


@pytest.mark.parametrize("unit", [f"{UNIT}.socket", f"{UNIT}.service"])
def test_units_run_and_are_enabled(host, unit):
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled


def test_gunicorn_is_hardened_like_the_orders_one(host):
    props = dict(line.split("=", 1) for line in host.check_output(
        f"systemctl show -p User -p ProtectSystem -p ProtectHome -p NoNewPrivileges -p PrivateTmp"
        f" -p CapabilityBoundingSet {UNIT}.service").splitlines())
    assert props == {"User": "hello", "ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                     "PrivateTmp": "yes", "CapabilityBoundingSet": ""}
    out = host.check_output(f"systemd-analyze security --no-pager {UNIT}.service | tail -1")
    assert float(re.search(r"exposure level for \S+: ([0-9.]+)", out).group(1)) <= 1.5, out
    main_pid = host.check_output(f"systemctl show -P MainPID {UNIT}.service")
    assert set(host.check_output(f"ps -o user= --ppid {main_pid} -p {main_pid}").split()) == {"hello"}
    assert host.socket(f"unix:///run/{UNIT}/gunicorn.sock").is_listening


def test_management_wrapper_runs_the_project(host):
    done = host.run("hello-manage check --deploy --fail-level WARNING")
    assert done.rc == 0, done.stdout + done.stderr
    assert "no issues (0 silenced)" in done.stdout
    assert host.run("runuser -u nobody -- /usr/local/bin/hello-manage check").rc == 2
