"""Fault drills on a converged all-in-one host (docs/decisions.md §8-10): what clients see.

Each drill streams requests from the control node through nginx while it breaks something,
then asserts the outcome docs/decisions.md sets: zero failed requests for a planned PostgreSQL
restart, 503 and never 500 while the database is gone, recovery without help, degraded but
working pages without Redis, every service back after a reboot.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_stack_web import _token

from drill import Stream, deploy, https_get, scenario_inventory


def wait_healthy(address, domain, ca, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if https_get(address, domain, ca, "/healthz", timeout=2)[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def postmaster_pid(host) -> int:
    return int(host.check_output("head -1 /var/lib/postgresql/*/main/postmaster.pid"))


def test_planned_postgresql_restart_fails_no_request(all_in_one):
    host, address, domain, ca = all_in_one
    before = postmaster_pid(host)
    with Stream(address, domain, ca, rate=25, max_seconds=90) as s:
        time.sleep(2)
        run = deploy(str(scenario_inventory()), playbook="pg-restart.yml")
        time.sleep(2)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert postmaster_pid(host) != before, "PostgreSQL was not restarted"
    assert len(s.results) > 50
    assert s.failures() == [], s.statuses()


def test_killed_postmaster_recovers_by_itself_without_500(all_in_one):
    """A crash: systemd starts PostgreSQL again (Restart=on-failure) within seconds. PgBouncer
    holds the app's queries meanwhile (up to query_wait_timeout), so clients see slower 200s,
    or 503 if it takes longer; never 500."""
    host, address, domain, ca = all_in_one
    before = postmaster_pid(host)
    with Stream(address, domain, ca, rate=10, max_seconds=90, timeout=20) as s:
        time.sleep(1)
        host.check_output(f"kill -KILL {before}")
        deadline = time.monotonic() + 30
        restarted = False
        while time.monotonic() < deadline and not restarted:
            time.sleep(0.5)
            pid = host.run("head -1 /var/lib/postgresql/*/main/postmaster.pid").stdout.strip()
            restarted = pid.isdigit() and int(pid) != before
        recovered = restarted and s.wait_for(lambda r: r[1] == 200, timeout=30)
    statuses = s.statuses()
    assert restarted, "PostgreSQL was not started again after the crash"
    assert recovered, f"no answer after the restart: {statuses}"
    assert set(statuses) <= {200, 503}, statuses


def test_database_outage_gives_503_never_500(all_in_one):
    """Longer than PgBouncer's query_wait_timeout: the app answers 503 itself, then recovers."""
    host, address, domain, ca = all_in_one
    pg = host.check_output("systemctl list-units --plain --no-legend 'postgresql@*' | awk '{print $1}'")
    with Stream(address, domain, ca, rate=4, max_seconds=90, timeout=25) as s:
        try:
            host.check_output(f"systemctl stop {pg}")
            outage = s.wait_for(lambda r: r[1] == 503, timeout=40)
        finally:
            host.check_output(f"systemctl start {pg}")
        recovered = s.wait_for(lambda r: r[1] == 200, timeout=40)
    statuses = s.statuses()
    assert outage, f"no 503 while the database was down: {statuses}"
    assert recovered, f"no 200 after the database came back: {statuses}"
    assert set(statuses) <= {200, 503}, statuses


def test_killed_gunicorn_master_is_restarted_and_requests_queue(all_in_one):
    host, address, domain, ca = all_in_one
    unit = "orders-gunicorn.service"
    before = host.check_output(f"systemctl show -p MainPID --value {unit}")
    with Stream(address, domain, ca, path="/livez", rate=20, max_seconds=60) as s:
        time.sleep(1)
        host.check_output(f"kill -KILL {before}")
        killed_at = time.monotonic()
        answered = s.wait_for(lambda r: r[1] == 200, timeout=15)
        back_after = time.monotonic() - killed_at
        time.sleep(2)
    after = host.check_output(f"systemctl show -p MainPID --value {unit}")
    assert after not in ("0", before), "systemd did not start a new master"
    assert answered and back_after < 15, f"no answer {back_after:.1f}s after the kill"
    statuses = s.statuses()
    assert 500 not in statuses, statuses
    # the socket unit holds the listening socket: new connections wait instead of failing;
    # only requests in flight at the moment of the kill may fail (at most a few)
    assert len(s.failures()) <= 3, statuses


def test_redis_down_degrades_without_500_and_recovers(all_in_one):
    host, address, domain, ca = all_in_one
    auth = {"Authorization": f"Bearer {_token(host, 'demo0003')}"}
    try:
        host.check_output("systemctl stop redis-server.service")
        health = https_get(address, domain, ca, "/healthz")
        orders = https_get(address, domain, ca, "/api/orders/", auth)
        detail_cats = https_get(address, domain, ca, "/api/categories/", auth)
    finally:
        host.check_output("systemctl start redis-server.service")
    assert health[0] == 503 and b'"redis"' in health[1], health
    assert orders[0] == 200, orders          # token look-up and list fall back to the database
    assert detail_cats[0] == 200, detail_cats  # a cache miss goes to the database
    assert wait_healthy(address, domain, ca, timeout=30), "healthz did not recover after Redis came back"


def test_reboot_brings_every_service_back(all_in_one):
    host, address, domain, ca = all_in_one
    units = ["nginx.service", "orders-gunicorn.socket", "pgbouncer.service", "redis-server.service",
             "stack-firewall.service", "stack-db-backup.timer"]
    boot_id = host.check_output("cat /proc/sys/kernel/random/boot_id")
    host.run("systemctl reboot")
    time.sleep(3)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if host.run("cat /proc/sys/kernel/random/boot_id").stdout.strip() not in ("", boot_id):
                break
        except Exception:  # the connection drops while the host reboots
            pass
        time.sleep(2)
    else:
        pytest.fail("host did not come back from the reboot")
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    assert state == "running", f"boot ended {state}: {host.run('systemctl --failed --no-legend').stdout}"
    assert wait_healthy(address, domain, ca, timeout=90), "site did not answer after the reboot"
    for unit in units:
        assert host.service(unit).is_enabled, unit
        assert host.service(unit).is_running, unit
    pg = host.check_output("systemctl list-units --plain --no-legend 'postgresql@*' | awk '{print $1}'")
    assert host.service(pg).is_running


def test_crashed_daemons_restart_by_themselves(all_in_one):
    host = all_in_one[0]
    for unit in ("nginx.service", "pgbouncer.service"):
        assert host.check_output(f"systemctl show -p Restart --value {unit}") == "on-failure", unit
    pg = host.check_output("systemctl list-units --plain --no-legend 'postgresql@*' | awk '{print $1}'")
    assert host.check_output(f"systemctl show -p Restart --value {pg}") == "on-failure"


def test_stream_only_targets_test_hosts(all_in_one):
    """Guard: the drills' load goes to the scenario's own bridge, never elsewhere."""
    address = all_in_one[1]
    assert address.startswith("10.231."), address
    assert Path(all_in_one[3]).exists()


MEDIA = "/srv/orders/shared/media"
ADMIN_USER, ADMIN_PASSWORD = "drill-admin", "drill-admin-password-0123456789"


def test_full_media_volume_fails_uploads_clearly_and_nothing_else(all_in_one):
    """A size-limited mount on the media directory, filled up: an image upload in the admin
    fails with a clear message and saves nothing; the API and health checks are unaffected."""
    host, address, domain, ca = all_in_one
    unit = "orders-gunicorn.service"
    site = f"https://{domain}"
    curl = f"curl -sk --resolve {domain}:443:127.0.0.1 -c /tmp/drill.jar -b /tmp/drill.jar"
    token_of = "grep -o 'name=\"csrfmiddlewaretoken\" value=\"[^\"]*\"' {} | head -1 | sed 's/.*value=\"//;s/\"$//'"
    host.run(f"DJANGO_SUPERUSER_PASSWORD={ADMIN_PASSWORD} orders-manage createsuperuser --noinput "
             f"--username {ADMIN_USER} --email drill@example.com")
    category = host.check_output(
        "orders-manage shell -c \"from apps.catalog.models import Category; print(Category.objects.first().pk)\""
    ).splitlines()[-1]
    host.check_output("/srv/orders/current/venv/bin/python -c \"from PIL import Image; "
                      "Image.effect_noise((400, 400), 90).convert('RGB').save('/tmp/drill.png')\"")
    uid, gid = host.check_output(f"stat -c '%u %g' {MEDIA}").split()
    host.check_output(f"mount -t tmpfs -o size=128k,mode=2750,uid={uid},gid={gid} drill-media {MEDIA}")
    try:
        host.run(f"dd if=/dev/zero of={MEDIA}/fill bs=4k 2>/dev/null")  # until the volume is full
        host.check_output(f"systemctl restart {unit}")  # the service sees the new mount
        host.check_output(f"rm -f /tmp/drill.jar; {curl} -o /tmp/login.html {site}/admin/login/")
        login = host.check_output(
            f"{curl} -o /dev/null -w '%{{http_code}}' -e {site}/admin/login/ "
            f"-d csrfmiddlewaretoken=$({token_of.format('/tmp/login.html')}) "
            f"-d username={ADMIN_USER} -d password={ADMIN_PASSWORD} -d next=/admin/ {site}/admin/login/"
        )
        assert login == "302", "admin login failed"
        host.check_output(f"{curl} -o /tmp/add.html {site}/admin/catalog/product/add/")
        status = host.check_output(
            f"{curl} -L -o /tmp/after.html -w '%{{http_code}}' -e {site}/admin/catalog/product/add/ "
            f"-F csrfmiddlewaretoken=$({token_of.format('/tmp/add.html')}) -F category={category} "
            "-F sku=DRILL-FULL -F name=Drill -F price=1.00 -F stock=1 -F is_active=on "
            f"-F image=@/tmp/drill.png {site}/admin/catalog/product/add/"
        )
        page = host.check_output("cat /tmp/after.html")
        assert status == "200", status
        assert "nothing was saved" in page and "No space left on device" in page
        assert host.check_output(
            "orders-manage shell -c \"from apps.catalog.models import Product; "
            "print(Product.objects.filter(sku='DRILL-FULL').exists())\"").splitlines()[-1] == "False"
        # nothing else breaks
        assert https_get(address, domain, ca, "/healthz")[0] == 200
        assert https_get(address, domain, ca, "/api/orders/", {"Authorization": f"Bearer {_token(host, 'demo0003')}"})[0] == 200
    finally:
        host.run(f"umount {MEDIA}; rm -f /tmp/drill.jar /tmp/login.html /tmp/add.html /tmp/after.html /tmp/drill.png")
        host.run(f"systemctl restart {unit}")
    assert wait_healthy(address, domain, ca, timeout=30)
