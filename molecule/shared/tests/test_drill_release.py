"""A release under load: `make deploy` of a new app version drops no request (docs/decisions.md §7, §10).

A steady stream of /healthz requests overlaps the whole deploy; it must see zero failures and
both release ids. The deploy is the real one (`ansible/site.yml`); the new version differs only
in its settings, which is enough for a new release id, a new venv, the checks on a side socket,
the switch and the restart under the socket unit.
"""

from __future__ import annotations

import time

from drill import Stream, deploy, scenario_inventory

WORKERS = ("orders-celery.service", "orders-celery-beat.service")


def worker_releases(host) -> dict[str, tuple[str, str]]:
    """(main pid, release directory it runs in) of Celery's worker and beat."""
    out = {}
    for unit in WORKERS:
        pid = host.check_output(f"systemctl show -P MainPID {unit}")
        out[unit] = (pid, host.check_output(f"readlink /proc/{pid}/cwd").rsplit("/", 1)[-1])
    return out


def test_release_under_load_drops_no_request_and_shows_both_ids(all_in_one):
    host, address, domain, ca = all_in_one
    inventory = str(scenario_inventory())
    before = host.check_output("readlink /srv/orders/current")
    workers_before = worker_releases(host)
    try:
        with Stream(address, domain, ca, rate=20, max_seconds=400, timeout=10) as s:
            time.sleep(2)
            run = deploy(inventory, "-e", "django_app_log_level=WARNING")
            time.sleep(3)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert host.check_output("readlink /srv/orders/current") != before, "no new release was deployed"
        assert len(s.results) > 100
        assert s.failures() == [], s.statuses()
        assert len(s.releases()) == 2, s.releases()
        # the switch restarted Celery's worker and beat on the new release (decisions §15)
        new = host.check_output("readlink /srv/orders/current").rsplit("/", 1)[-1]
        for unit, (pid, release) in worker_releases(host).items():
            assert release == new and pid != workers_before[unit][0], (unit, workers_before[unit], (pid, release))
    finally:
        # back to the scenario's own settings (the previous release is switched to again)
        assert deploy(inventory).returncode == 0


def test_rollback_goes_back_one_release_without_failed_requests(all_in_one):
    """`make rollback`: the previous release is live again, checked, with no failed request."""
    host, address, domain, ca = all_in_one
    inventory = str(scenario_inventory())
    assert deploy(inventory, "-e", "django_app_log_level=WARNING").returncode == 0
    newer = host.check_output("readlink /srv/orders/current").rsplit("/", 1)[-1]
    try:
        with Stream(address, domain, ca, rate=20, max_seconds=300, timeout=10) as s:
            time.sleep(2)
            run = deploy(inventory, playbook="rollback.yml")
            time.sleep(3)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        older = host.check_output("readlink /srv/orders/current").rsplit("/", 1)[-1]
        assert older != newer
        assert s.failures() == [], s.statuses()
        assert s.releases() == {newer, older}, s.releases()
        assert {release for _, release in worker_releases(host).values()} == {older}
    finally:
        assert deploy(inventory).returncode == 0
