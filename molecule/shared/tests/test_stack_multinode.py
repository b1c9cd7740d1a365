"""Split topology: nginx on a web host balances over every app host, fails over when one
stops, never sends a POST twice, and an order made through it is read back through either
app host; a release that fails on the first app host of the rolling deploy stops the roll-out.
Runs on web hosts that proxy over TCP to two or more app hosts; skipped elsewhere.

Which app host answered is read from the app hosts' own journals (one JSON line per request),
never from a response header.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from urllib.parse import urlsplit

import pytest
from test_stack_web import _in_stock_product, _token, create_order, curl, parse

from conftest import address_of, groups_of, in_a_cluster, inventory_groups, other_host
from drill import FAILS_UNDER_SOCKET_ACTIVATION, Stream, app_variant, ca_file, deploy, files_holding, scenario_inventory

UNITS = "orders-gunicorn.socket orders-gunicorn.service"
PROBE_UNIT = "probe-upstream-502"
# Stands in for a sick app server: reads the request, answers 502 to every method.
FAKE_502 = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_POST = do_HEAD = answer
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


@pytest.fixture(scope="module")
def app_hosts(host):
    """The app hosts this web host reaches over the network (two or more), else skip."""
    if "web" not in groups_of(host) or "app" in groups_of(host):
        pytest.skip("not a web host that proxies to remote app hosts")
    names = inventory_groups(host).get("app", [])
    if len(names) < 2:
        pytest.skip("fewer than two app hosts")
    return {name: other_host(name) for name in names}


@pytest.fixture(scope="module")
def site(host, app_hosts):
    v = host.ansible.get_variables()
    return {"domain": str(v["site_domain"]), "address": address_of(host), "ca": ca_file(v)}


def _seen(app, marker: str) -> set[int]:
    """Indices of probe requests ``marker`` this app host's Gunicorn logged."""
    out = app.run(f"journalctl -u orders-gunicorn.service --since '-10min' -o cat --no-pager | grep -F '{marker}'").stdout
    return {int(i) for i in re.findall(rf"{re.escape(marker)}-(\d+)", out)}


def _wait_until_serving(app):
    for _ in range(30):
        if app.run("curl -fsS --max-time 2 --unix-socket /run/orders-gunicorn/gunicorn.sock http://localhost/healthz").rc == 0:
            return
        time.sleep(1)
    raise AssertionError(f"{app.backend.get_hostname()} did not come back")


def _spread(site, app_hosts, count: int = 20) -> dict[str, set[int]]:
    """Send ``count`` marked requests through nginx; which of them each app host answered."""
    marker = f"probe-spread-{uuid.uuid4().hex[:12]}"
    for i in range(count):
        status, _, _ = parse(curl(site, f"/{marker}-{i}", "-o", "/dev/null").stdout)
        assert status == 404
    seen: dict[str, set[int]] = {}
    for _ in range(10):  # the journal is written a moment after the answer
        seen = {name: _seen(app, marker) for name, app in app_hosts.items()}
        if set().union(*seen.values()) == set(range(count)):
            break
        time.sleep(0.5)
    assert set().union(*seen.values()) == set(range(count)), seen
    return seen


def test_requests_spread_over_every_app_host(site, app_hosts):
    seen = _spread(site, app_hosts)
    assert all(seen.values()), f"an app host got none of the requests: {seen}"


def test_order_round_trip_across_app_hosts(site, app_hosts):
    """Made through nginx, then read back through nginx often enough to hit every app host."""
    first = next(iter(app_hosts.values()))
    token = _token(first, "demo0003")
    order_id = create_order(site, token, _in_stock_product(first))
    marker = f"/api/orders/{order_id}/"
    for _ in range(2 * len(app_hosts)):
        status, _, read = parse(curl(site, marker, "-H", f"Authorization: Bearer {token}").stdout)
        assert status == 200 and json.loads(read)["id"] == order_id, read
    time.sleep(1)
    readers = [name for name, app in app_hosts.items()
               if app.run(f"journalctl -u orders-gunicorn.service --since '-2min' -o cat --no-pager"
                          f" | grep -F '\"{marker}\"' | grep -q '\"GET\"'").rc == 0]
    assert len(readers) == len(app_hosts), f"the order was read through {readers} only"


def test_one_app_host_down_site_answers_and_posts_are_not_retried(host, site, app_hosts):
    name, victim = list(app_hosts.items())[-1]
    hv = victim.ansible.get_variables()
    address, port = str(hv.get("stack_private_address") or hv["ansible_host"]), int(hv.get("gunicorn_port", 8000))
    script = base64.b64encode(FAKE_502.encode()).decode()
    baseline = parse(curl(site, "/api/categories/", "-o", "/dev/null").stdout)[0]
    assert baseline == 200
    try:
        assert victim.run(f"systemctl stop {UNITS}").rc == 0
        # a sick server that accepts and answers 502: a POST that reached it is not passed on
        victim.check_output(f"echo {script} | base64 -d > /run/{PROBE_UNIT}.py")
        victim.run(f"systemctl stop {PROBE_UNIT} 2>/dev/null; systemctl reset-failed {PROBE_UNIT} 2>/dev/null")
        victim.check_output(f"systemd-run --unit={PROBE_UNIT} --property=RuntimeMaxSec=120 "
                            f"/usr/bin/python3 /run/{PROBE_UNIT}.py {address} {port}")
        for _ in range(50):
            if victim.socket(f"tcp://{address}:{port}").is_listening:
                break
            time.sleep(0.1)
        posts = [parse(curl(site, "/api/orders/", "-H", "Content-Type: application/json", "--data", "{}",
                            "-o", "/dev/null").stdout)[0] for _ in range(6)]
        assert 502 in posts, f"no POST reached the sick server: {posts}"
        assert set(posts) <= {401, 403, 429, 502}, posts  # 4xx: the healthy app host refusing a POST without token
        # GET, HEAD...: passed on to a healthy app host
        gets = [parse(curl(site, "/api/categories/", "-o", "/dev/null").stdout)[0] for _ in range(6)]
        assert gets == [baseline] * 6, gets

        # nothing listens on the stopped host at all: connections are refused, the site answers
        victim.run(f"systemctl stop {PROBE_UNIT}")
        for path in ["/healthz", "/api/categories/"] * 3:
            status, _, body = parse(curl(site, path).stdout)
            assert status == 200, f"{path} with {name} down: {status} {body[:200]}"
    finally:
        victim.run(f"systemctl stop {PROBE_UNIT}; rm -f /run/{PROBE_UNIT}.py")
        victim.run(f"systemctl start {UNITS}")
    _wait_until_serving(victim)
    assert victim.service("orders-gunicorn.service").is_running


def _secrets_of(app) -> dict[str, str]:
    """The secret values of an app host's env file: the key, the DB and Redis passwords."""
    env = dict(line.split("=", 1) for line in app.check_output("cat /srv/orders/current/env").splitlines()
               if "=" in line and not line.startswith("#"))
    env = {k: v.strip("'") for k, v in env.items()}
    db, redis = urlsplit(env["DATABASE_URL"]), urlsplit(env["REDIS_URL"])
    return {"DJANGO_SECRET_KEY": env["DJANGO_SECRET_KEY"], "db password": db.password or "",
            "redis password": redis.password or ""}


def test_web_only_host_holds_no_secret(host, app_hosts):
    """A web host that runs no app code serves the release's static files, with no env file, no
    management wrapper, and none of the app's secrets anywhere it could be read."""
    secrets = _secrets_of(next(iter(app_hosts.values())))
    assert all(len(v) >= 16 for v in secrets.values()), "the probe needs the real secrets"
    assert host.file("/srv/orders/current/static/staticfiles.json").is_file
    envs = host.run("find /srv/orders -name env").stdout.split()
    assert envs == [], f"env files on a web-only host: {envs}"
    assert not host.file("/usr/local/bin/orders-manage").exists
    for name, value in secrets.items():
        found = files_holding(host, value, ["/srv", "/etc", "/usr/local", "/root", "/var/lib", "/tmp"])
        assert found == [], f"the {name} is on the web host: {found}"


def _current(app) -> str:
    return app.check_output("readlink /srv/orders/current").rsplit("/", 1)[-1]


def _releases(app) -> set[str]:
    return set(app.check_output("ls -1 /srv/orders/releases").split())


def test_release_failing_on_the_first_app_host_stops_the_rollout(host, site, app_hosts, tmp_path):
    """A release that passes every check before the switch but dies under the live service
    (drill.FAILS_UNDER_SOCKET_ACTIVATION) on the first app host of the serial roll-out: the run
    fails saying so, that host is switched back and put back into nginx's rotation, the next app
    host is never switched nor restarted, the release is removed from both, and a /healthz
    stream through the web host sees no failed request. The scenario's release is deployed again
    only when a check failed (once they all pass, every host is shown to be as it was)."""
    inventory = str(scenario_inventory())
    web = host.backend.get_hostname()
    (first, _), (second, second_host) = list(app_hosts.items())[:2]
    site_file = f"/etc/nginx/sites-available/{site['domain']}.conf"
    before = {name: _current(app) for name, app in app_hosts.items()}
    kept = {name: _releases(app) for name, app in app_hosts.items()}
    started = "systemctl show -p ActiveEnterTimestampMonotonic,MainPID orders-gunicorn.service"
    second_started = second_host.check_output(started)
    upstream = host.check_output(f"sha256sum {site_file}")
    source = app_variant(tmp_path / "app", FAILS_UNDER_SOCKET_ACTIVATION)
    as_before = False
    try:
        with Stream(site["address"], site["domain"], site["ca"], rate=10, max_seconds=600, timeout=40) as s:
            time.sleep(2)
            run = deploy(inventory, "-e", f"django_app_source_dir={source}", json_results=True)
            time.sleep(3)
        output = " ".join((run.stdout + run.stderr).split())
        assert run.returncode != 0, output[-3000:]
        stopped = re.search(r"The roll-out stopped at .*?Not switched [^:]*: [^.]*\.", output)
        assert stopped, output[-4000:]
        said = stopped.group(0)
        for part in (f"The roll-out stopped at {first}: Release ", f" failed after the switch on {first} (",
                     f"Switched back to {before[first]}, which answers again.",
                     f"The failed release was removed from {first}, {second}.",
                     f"{first} is back in rotation on {web}.",
                     f"Not switched (they keep their release and were not restarted): {second}."):
            assert part in said, f"{part!r} not in: {said}"
        failed = re.search(r"Release ([0-9a-f]{12}) failed", said)[1]
        assert failed not in set(before.values())
        assert len(s.results) > 50
        assert s.failures() == [], s.statuses()
        assert s.releases() == set(before.values()), s.releases()
        assert {name: _current(app) for name, app in app_hosts.items()} == before
        assert second_host.check_output(started) == second_started, f"{second} was restarted"
        assert {name: _releases(app) for name, app in app_hosts.items()} == kept, "the failed release is left"
        # back in rotation: the upstream is byte for byte as before, and requests reach the host
        assert host.check_output(f"sha256sum {site_file}") == upstream
        assert _spread(site, app_hosts)[first], f"{first} gets no requests"
        as_before = True
    finally:
        if not as_before:
            assert deploy(inventory).returncode == 0
    assert {name: _current(app) for name, app in app_hosts.items()} == before


def test_a_run_limited_to_the_db_host_keeps_pgbouncer_as_it_is(host, app_hosts):
    """`make deploy ARGS='--limit db1'` does not size the app hosts (their sizing play is not
    part of the run): PgBouncer's pools stay as the full run sized them, read back from its
    configuration, so the file is unchanged and PgBouncer is neither restarted nor reloaded
    with other pools."""
    db_name = inventory_groups(host)["db"][0]
    db = other_host(db_name)
    ini = "/etc/pgbouncer/pgbouncer.ini"
    if in_a_cluster(host):
        # PgBouncer runs on each app host, sized from its own workers: a run on one db host
        # (a Patroni member) leaves every one of them as it is
        pids = {a: other_host(a).check_output("systemctl show -P MainPID pgbouncer.service") for a in app_hosts}
        sums = {a: other_host(a).check_output(f"sha256sum {ini}") for a in app_hosts}
        run = deploy(str(scenario_inventory()), "--limit", db_name)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        assert {a: other_host(a).check_output(f"sha256sum {ini}") for a in app_hosts} == sums
        assert {a: other_host(a).check_output("systemctl show -P MainPID pgbouncer.service") for a in app_hosts} == pids
        return
    recorded = db.check_output(f"grep '^; app workers by host: ' {ini}")
    assert set(json.loads(recorded.split(": ", 1)[1])) == set(app_hosts), recorded
    before = db.check_output(f"sha256sum {ini}")
    pid = db.check_output("systemctl show -P MainPID pgbouncer.service")
    run = deploy(str(scenario_inventory()), "--limit", db_name)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "Keep their recorded workers" in run.stdout, "the probe must run without the sizing play"
    assert db.check_output(f"sha256sum {ini}") == before, db.check_output(f"grep -E 'workers|pool|max_' {ini}")
    assert db.check_output("systemctl show -P MainPID pgbouncer.service") == pid


def test_a_run_limited_to_the_web_host_looks_the_login_role_up(host, app_hosts):
    """`--limit web1`: the db host is not converged, so the app's login role is looked up there
    (ansible/login_role_lookup.yml, delegated); the run succeeds and changes nothing."""
    web = host.backend.get_hostname()
    run = deploy(str(scenario_inventory()), "--limit", web)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "Look it up on the db host" in run.stdout, "the probe must run the look-up"
    recap = re.search(rf"^{re.escape(web)}\s*:.*$", run.stdout, re.M)
    assert recap and "changed=0" in recap.group(0), recap
