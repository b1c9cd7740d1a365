"""Backups of the app database: the timer, the files, and a restore drill.

The drill: count the orders, back up, destroy the data, restore, and find every row back,
with the site answering afterwards.
"""

from __future__ import annotations

import json
import re

import pytest
from test_stack_web import _in_stock_product, _token

from conftest import groups_of, in_a_cluster
from drill import deploy, https_get, https_request, scenario_inventory

BACKUP_DIR = "/var/backups/postgresql"


@pytest.fixture
def db_host(host):
    if "db" not in groups_of(host):
        pytest.skip("not a db host")
    if in_a_cluster(host):
        pytest.skip("exports (pg_dump) run with one db host; a Patroni cluster's backups: test_stack_pgbackrest")
    return host


def psql(host, sql: str, db: str = "orders") -> str:
    return host.check_output(f"runuser -u postgres -- psql -X -At -d {db} -c \"{sql}\"")


def fingerprint(host) -> str:
    """Row counts and id sums of the order tables: any lost or changed row shows."""
    return psql(
        host,
        "SELECT (SELECT count(*) || ':' || coalesce(sum(id), 0) FROM orders_order) || '/' || "
        "(SELECT count(*) || ':' || coalesce(sum(quantity), 0) FROM orders_orderitem)",
    )


def test_backup_timer_is_scheduled(db_host):
    timer = db_host.service("stack-db-backup.timer")
    assert timer.is_enabled
    assert timer.is_running
    assert "stack-db-backup.timer" in db_host.check_output("systemctl list-timers --all --no-legend")


def test_backup_directory_is_private(db_host):
    d = db_host.file(BACKUP_DIR)
    assert d.is_directory
    assert (d.user, d.group, d.mode) == ("postgres", "postgres", 0o700)


def test_backup_and_restore_drill(db_host):
    host = db_host
    before = fingerprint(host)
    assert not before.startswith("0:"), "the drill needs orders to back up (demo data)"

    run = host.run("systemctl start stack-db-backup.service")
    assert run.rc == 0, run.stderr
    newest = host.check_output(f"ls -1t {BACKUP_DIR}/*.dump | head -1")
    dump = host.file(newest)
    assert (dump.user, dump.mode) == ("postgres", 0o600)
    assert host.file(newest + ".sha256").mode == 0o600
    assert host.run(f"cd {BACKUP_DIR} && sha256sum -c {newest.rsplit('/', 1)[1]}.sha256").rc == 0

    psql(host, "DELETE FROM orders_orderitem; DELETE FROM orders_order")
    assert fingerprint(host) == "0:0/0:0"

    restore = host.run(f"/usr/local/sbin/stack-db-restore {newest}")
    assert restore.rc == 0, restore.stdout + restore.stderr
    assert fingerprint(host) == before
    # the restored database keeps the original's shape: only its owner may connect
    assert psql(host, "SELECT has_database_privilege('public', current_database(), 'CONNECT')") == "f"
    # the app, through PgBouncer, reads the restored database
    domain = host.ansible.get_variables()["site_domain"]
    if "web" in groups_of(host):
        status = host.check_output(
            f"curl -sk -o /dev/null -w '%{{http_code}}' --resolve {domain}:443:127.0.0.1 https://{domain}/healthz"
        )
        assert status == "200"
    old = [line for line in restore.stdout.splitlines() if "kept as" in line]
    assert old, restore.stdout
    psql(host, f"DROP DATABASE \\\"{old[0].rsplit(' ', 1)[1]}\\\"", db="postgres")


def test_make_restore_empties_the_cache_of_what_the_backup_does_not_have(all_in_one):
    """`make restore BACKUP=` (ansible/restore-dump.yml): an order made after the backup and read (so its detail
    is cached) is gone after the restore, and the API says so at once instead of serving the
    cached copy for the cache's lifetime."""
    host, address, domain, ca = all_in_one
    token, product = _token(host, "demo0003"), _in_stock_product(host)
    assert host.run("systemctl start stack-db-backup.service").rc == 0
    newest = host.check_output(f"ls -1t {BACKUP_DIR}/*.dump | head -1")

    auth = {"Authorization": f"Bearer {token}"}
    status, _, created = https_request(
        address, domain, ca, "POST", "/api/orders/", headers={**auth, "Content-Type": "application/json"},
        body=json.dumps({"items": [{"product_id": product, "quantity": 1}]}).encode())
    assert status == 201, created
    path = f"/api/orders/{json.loads(created)['id']}/"
    assert https_get(address, domain, ca, path, auth)[0] == 200
    assert https_get(address, domain, ca, path, auth)[0] == 200  # served from the cache

    run = deploy(str(scenario_inventory()), "-e", f"backup={newest}", playbook="restore-dump.yml",
                 json_results=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    status, body = https_get(address, domain, ca, path, auth)
    assert status == 404, body
    kept = re.search(r"kept as (\w+_pre_restore_\w+)", run.stdout)
    assert kept, run.stdout[-3000:]
    psql(host, f"DROP DATABASE \\\"{kept.group(1)}\\\"", db="postgres")


def test_restore_refuses_a_damaged_dump_and_changes_nothing(db_host):
    host = db_host
    before = fingerprint(host)
    host.check_output(f"cp -p $(ls -1t {BACKUP_DIR}/*.dump | head -1) /tmp/damaged.dump")
    host.check_output("cd /tmp && sha256sum damaged.dump > damaged.dump.sha256 && printf x >> damaged.dump")
    res = host.run("/usr/local/sbin/stack-db-restore /tmp/damaged.dump")
    host.run("rm -f /tmp/damaged.dump /tmp/damaged.dump.sha256")
    assert res.rc != 0
    assert "checksum mismatch" in res.stderr
    assert fingerprint(host) == before
