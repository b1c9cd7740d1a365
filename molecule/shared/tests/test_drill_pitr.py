"""Point-in-time restore drill (`make restore TARGET_TIME=... | TARGET=latest`, ansible/restore.yml).

Runs once per scenario, from its db host, against the converged hosts: orders acknowledged
(each 201 and its id) before a target time come back with their items, orders made after it do
not exist; while the restore runs, a bounded client polling the API through nginx sees only 200
and the maintenance 503 (JSON body, Retry-After), never a 500, a 502 or a refused connection.
Targets the repository cannot reach (before its oldest backup, in the future) are refused with
the message, and nothing changes (the postmaster, the maintenance flag). Then `TARGET=latest`,
whose measured RTO (start of the restore to the first 200 after the outage) is printed.
In a Patroni cluster (multinode) the whole cluster is restored: the first db host leads
afterwards, the others are made again from a new backup (the restore waits for them).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
import time
from dataclasses import dataclass, field

import pytest
from test_stack_web import _app_host, _token

from conftest import address_of, groups_of, other_host
from drill import ca_file, deploy, https_request, scenario_inventory

FLAG = "/etc/nginx/stack-maintenance"
MARKERS = 4  # orders at T1 and at T2 each: enough to count, cheap to make


@pytest.fixture(scope="module")
def pitr(host):
    """(db host, app host, web host, web address, domain, CA file, inventory) of the scenario."""
    if "db" not in groups_of(host):
        pytest.skip("the point-in-time drill runs once, from the db host")
    hv = host.ansible.get_variables()
    groups = hv["groups"]
    if hv["inventory_hostname"] != groups["db"][0]:
        pytest.skip(f"a Patroni cluster is restored once, from {groups['db'][0]} (it leads afterwards)")
    web = host if host.backend.get_hostname() == groups["web"][0] else other_host(groups["web"][0])
    return {
        "db": host,
        "app": _app_host(host),
        "web": web,
        "address": address_of(web),
        "domain": hv["site_domain"],
        "ca": ca_file(hv),
        "inventory": str(scenario_inventory()),
        "hv": hv,
    }


def restore(p, target: str):
    return deploy(p["inventory"], "-e", json.dumps({"restore_target": target}), playbook="restore.yml",
                  json_results=True)


def postmaster_pid(db) -> str:
    return db.check_output("head -1 /var/lib/postgresql/*/main/postmaster.pid")


def utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def oldest_backup_stop(p) -> int:
    """The end of the repository's oldest backup, read where the repository is."""
    hv, groups = p["hv"], p["hv"]["groups"]
    repo_name = (groups.get("backup") or groups["db"])[0]
    repo = p["db"] if repo_name == p["db"].backend.get_hostname() else other_host(repo_name)
    user = "postgres" if repo_name in groups["db"] else "pgbackrest"
    stanza = hv.get("stack_backup_stanza", hv["stack_env"])
    info = json.loads(repo.check_output(f"runuser -u {user} -- pgbackrest --stanza={stanza} --output=json info"))
    return min(b["timestamp"]["stop"] for b in info[0]["backup"])


def products(app, n: int) -> list[int]:
    out = app.check_output(
        "orders-manage shell -c \"from apps.catalog.models import Product; "
        f"print(list(Product.objects.filter(stock__gt=100, is_active=True).order_by('id').values_list('id', flat=True)[:{n}]))\""
    )
    ids = json.loads(out.strip().splitlines()[-1])
    assert len(ids) == n, out
    return ids


def make_orders(p, token: str, items: list[dict], n: int) -> dict[int, list]:
    """n orders through nginx; every acknowledged one (201) with its id and items as the API gave them."""
    made = {}
    for _ in range(n):
        status, _, body = https_request(p["address"], p["domain"], p["ca"], "POST", "/api/orders/",
                                        headers={"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/json"},
                                        body=json.dumps({"items": items}).encode())
        assert status == 201, body
        order = json.loads(body)
        made[order["id"]] = sorted((i["product_id"], i["quantity"]) for i in order["items"])
    return made


def get_order(p, token: str, order_id: int) -> tuple[int, dict]:
    status, _, body = https_request(p["address"], p["domain"], p["ca"], "GET", f"/api/orders/{order_id}/",
                                    headers={"Authorization": f"Bearer {token}"})
    return status, json.loads(body) if body.startswith(b"{") else {}


@dataclass
class Poller:
    """A bounded client (rate, hard stop) asking the API and /healthz through nginx, as clients
    would during the restore: (time, status or error name, Retry-After, body is a JSON error)."""
    p: dict
    token: str
    rate: float = 4.0
    max_seconds: float = 240.0
    results: list = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = 0.0

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set() and time.monotonic() - self.start < self.max_seconds:
            path, headers = (("/api/orders/", {"Authorization": f"Bearer {self.token}"}) if n % 2 == 0
                             else ("/healthz", {}))
            t = time.monotonic()
            try:
                status, hdrs, body = https_request(self.p["address"], self.p["domain"], self.p["ca"], "GET", path,
                                                   headers=headers, timeout=10)
                retry = {k.lower(): v for k, v in hdrs}.get("retry-after")
                try:
                    error = "error" in json.loads(body)
                except ValueError:
                    error = False
                self.results.append((t - self.start, status, retry, error))
            except (OSError, http.client.HTTPException) as exc:
                self.results.append((t - self.start, type(exc).__name__, None, False))
            n += 1
            time.sleep(max(0.0, self.start + n / self.rate - time.monotonic()))

    def __enter__(self) -> Poller:
        self.start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def wrong(self) -> list:
        """Anything but a 200 or the maintenance 503 (JSON error, Retry-After)."""
        return [r for r in self.results if not (r[1] == 200 or (r[1] == 503 and r[2] and r[3]))]

    def outage(self) -> tuple[float, float] | None:
        """(first 503, first 200 after the last 503), seconds since the start; None without a 503."""
        down = [r[0] for r in self.results if r[1] == 503]
        if not down:
            return None
        back = [r[0] for r in self.results if r[1] == 200 and r[0] > down[-1]]
        return down[0], (back[0] if back else float("inf"))


def site_state(p) -> tuple[str, bool, bool]:
    """What a refused restore must leave alone: the postmaster, the flag's absence, the app."""
    return (postmaster_pid(p["db"]), p["web"].file(FLAG).exists,
            p["app"].service(f"{p['hv'].get('stack_app_name', 'orders')}-gunicorn.socket").is_running)


@pytest.mark.parametrize("when", ["before the oldest backup", "in the future"])
def test_pitr_refuses_a_target_it_cannot_reach_and_changes_nothing(pitr, when):
    p = pitr
    if when == "in the future":
        target, message = utc(time.time() + 3600), "is in the future"
    else:
        target, message = utc(oldest_backup_stop(p) - 1), "is before the oldest backup's end"
    before = site_state(p)
    assert before[1:] == (False, True), before
    run = restore(p, target)
    assert run.returncode != 0, run.stdout[-2000:]
    assert message in run.stdout and "nothing was changed" in run.stdout.lower(), run.stdout[-3000:]
    assert site_state(p) == before


def test_pitr_brings_back_what_was_acknowledged_before_the_target_and_nothing_after(pitr):
    p = pitr
    token = _token(p["app"], "demo0004")
    first, second = products(p["app"], 2)
    items = [{"product_id": first, "quantity": 2}, {"product_id": second, "quantity": 1}]

    t1 = make_orders(p, token, items, MARKERS)
    time.sleep(1.5)
    target = p["db"].check_output("date -u '+%Y-%m-%d %H:%M:%S+00'")  # the db host's clock, to the second
    time.sleep(1.5)
    t2 = make_orders(p, token, items, MARKERS)
    assert len(t1) == len(t2) == MARKERS

    with Poller(p, token) as poll:
        time.sleep(1)
        run = restore(p, target)
        time.sleep(2)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert not p["web"].file(FLAG).exists

    for order_id, lines in t1.items():
        status, order = get_order(p, token, order_id)
        assert status == 200, (order_id, order)
        assert sorted((i["product_id"], i["quantity"]) for i in order["items"]) == lines, order
    for order_id in t2:
        assert get_order(p, token, order_id)[0] == 404, f"order {order_id}, made after {target}, is still there"
    # the app's own database login works through PgBouncer after the restore (a new order)
    assert make_orders(p, token, items, 1)

    assert len(poll.results) > 10
    assert poll.wrong() == [], poll.wrong()[:10]
    assert poll.outage(), "the poller never saw the maintenance 503"


def test_pitr_latest_keeps_everything_and_prints_the_rto(pitr, capsys):
    p = pitr
    token = _token(p["app"], "demo0004")
    first, second = products(p["app"], 2)
    made = make_orders(p, token, [{"product_id": first, "quantity": 1}, {"product_id": second, "quantity": 3}], MARKERS)

    with Poller(p, token) as poll:
        time.sleep(1)
        started = time.monotonic() - poll.start
        run = restore(p, "latest")
        time.sleep(2)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]

    for order_id, lines in made.items():  # committed just before: archived before PostgreSQL stopped
        status, order = get_order(p, token, order_id)
        assert status == 200, (order_id, order)
        assert sorted((i["product_id"], i["quantity"]) for i in order["items"]) == lines, order
    assert poll.wrong() == [], poll.wrong()[:10]
    outage = poll.outage()
    assert outage and outage[1] != float("inf"), poll.results[-10:]
    with capsys.disabled():
        print(f"\nRTO: {outage[1] - started:.0f} s (restore started to the first 200 through nginx; "
              f"503 for {outage[1] - outage[0]:.0f} s)")
