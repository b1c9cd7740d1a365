"""The db host is lost mid-write and rebuilt from the backup host alone.

Orders are written through the site; the db host's container is killed (SIGKILL of the whole
host: nothing flushed or archived after that instant) and a brand-new, empty host takes its
name and addresses. `make restore ENV=<env> TARGET=latest` (ansible/restore.yml) converges it
and restores the cluster from pgBackRest's repository on the backup host. Every acknowledged
order that comes back has its items; the ones that do not are the newest only (no hole), and
they span at most what archive_timeout lets a lost host take with it. The measured RPO and RTO
are printed (docs/operations.md records them).

Runs in the multinode scenario: a db host with the repository on another host.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from test_stack_backup import psql
from test_stack_web import _in_stock_product, _token

from conftest import address_of, groups_of, in_a_cluster, inventory_groups, other_host
from drill import ca_file, deploy, https_get, https_request, scenario_inventory

WRITE_SECONDS = 75  # longer than archive_timeout (60 s): the loss is bounded by it, not by the run
RATE = 4  # orders per second


@pytest.fixture(scope="module")
def lost_db(host):
    if "db" not in groups_of(host):
        pytest.skip("not the db host")
    groups = inventory_groups(host)
    if groups.get("backup", [host.ansible.get_variables()["inventory_hostname"]])[0] in groups["db"]:
        pytest.skip("the repository is on the db host: losing it loses the backups (nothing to drill)")
    if in_a_cluster(host):
        pytest.skip("a Patroni cluster: a lost db host is a failover (test_drill_patroni), not a restore")
    if "MOLECULE_SCENARIO_NAME" not in os.environ:
        pytest.skip("needs the harness's environment of a Molecule scenario")
    return host


def test_lost_db_host_is_rebuilt_from_the_backup_host(lost_db, capsys):
    from testhosts.drill import lose_host, rebuild_host

    groups = inventory_groups(lost_db)
    name = lost_db.ansible.get_variables()["inventory_hostname"]
    web, app = other_host(groups["web"][0]), other_host(groups["app"][0])
    hv = web.ansible.get_variables()
    address, domain, ca = address_of(web), str(hv["site_domain"]), ca_file(hv)
    token, product = _token(app, "demo0005"), _in_stock_product(app)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps({"items": [{"product_id": product, "quantity": 2}]}).encode()

    acked: list[tuple[int, float]] = []  # (order id, when its 201 arrived)
    stop = threading.Event()

    def write():
        while not stop.is_set():
            started = time.monotonic()
            try:
                status, _, out = https_request(address, domain, ca, "POST", "/api/orders/", headers=auth,
                                               body=body, timeout=5)
                if status == 201:
                    acked.append((json.loads(out)["id"], time.time()))
            except OSError:
                pass
            stop.wait(max(0.0, 1 / RATE - (time.monotonic() - started)))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(WRITE_SECONDS)
        lost_at = time.time()
        lose_host(f"m-{os.environ['MOLECULE_SCENARIO_NAME']}", name)
        time.sleep(3)
    finally:
        stop.set()
        writer.join()
    acked = [a for a in acked if a[1] <= lost_at]
    assert len(acked) >= WRITE_SECONDS * RATE // 2, f"only {len(acked)} orders acknowledged before the loss"

    failed = rebuild_host(f"m-{os.environ['MOLECULE_SCENARIO_NAME']}", name)
    assert failed == [], failed
    started = time.monotonic()
    run = deploy(str(scenario_inventory()), "-e", "restore_target=latest", playbook="restore.yml")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    while time.monotonic() - started < 1200:
        try:
            if https_get(address, domain, ca, "/healthz")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(1)
    rto = time.monotonic() - started

    db = other_host(name)
    ids = ",".join(str(i) for i, _ in acked)
    rows = psql(db, "SELECT o.id, count(i.id), coalesce(sum(i.quantity), 0) FROM orders_order o "
                f"LEFT JOIN orders_orderitem i ON i.order_id = o.id WHERE o.id IN ({ids}) GROUP BY o.id")
    back = {int(r.split("|")[0]): (int(r.split("|")[1]), int(r.split("|")[2])) for r in rows.splitlines() if r}
    assert all(v == (1, 2) for v in back.values()), "an order came back without its item"
    kept = [a for a in acked if a[0] in back]
    lost = [a for a in acked if a[0] not in back]
    assert kept, "no acknowledged order came back"
    # WAL replays in order: what is lost is the newest writes, never one in between
    assert not lost or min(t for _, t in lost) >= max(t for _, t in kept), "a hole: an older order is missing"
    window = (lost_at - max(t for _, t in kept)) if lost else 0.0
    archive_timeout = int(lost_db.ansible.get_variables().get("stack_archive_timeout", 60))
    with capsys.disabled():  # in make test's output, for the README's figures
        print(f"\nRPO: {len(lost)} of {len(acked)} acknowledged orders lost, the last {window:.0f} s of writes "
              f"(archive_timeout {archive_timeout} s); RTO: {rto:.0f} s from make restore on the rebuilt host "
              "to the first 200")
    assert window <= archive_timeout + 15, f"lost {window:.0f} s of acknowledged writes"

    # the restored cluster archives again, into the same repository
    assert db.service("pgbackrest-server.service").is_running
    check = other_host(groups["backup"][0]).run(
        f"runuser -u pgbackrest -- pgbackrest --stanza={lost_db.ansible.get_variables()['stack_env']} check")
    assert check.rc == 0, check.stdout + check.stderr
    status, _, out = https_request(address, domain, ca, "POST", "/api/orders/", headers=auth, body=body)
    assert status == 201, out
