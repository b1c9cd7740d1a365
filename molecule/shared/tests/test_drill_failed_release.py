"""A release that breaks never stays live (docs/decisions.md §7, issue 6 "Automatic rollback").

Three new app versions with a planted fault are deployed for real (`ansible/site.yml`, built
from a copy of app/) while a stream of /healthz requests runs through nginx. Each must leave
the site serving the previous release with zero failed requests, its own release directory
removed, and a failed run whose message says what broke:

- a migration that fails: stopped at `migrate`, before any switch;
- an app that cannot start: stopped by the check on a side socket, before any switch;
- an app that starts on the side socket but fails under the live service: switched to, seen
  dead, switched back. The fault is planted to stand in for faults only the real service shows
  (its sandbox, its socket unit): started by the socket unit (LISTEN_FDS set), Gunicorn's
  workers exit at once as "failed to boot", after the master told systemd it was ready. Requests
  queue on the socket unit while the release dies and the previous one starts again.

Every test deploys the scenario's own release again at the end.
"""

from __future__ import annotations

import re
import time

from drill import (
    FAILING_MIGRATION,
    FAILS_TO_START,
    FAILS_UNDER_SOCKET_ACTIVATION,
    Stream,
    app_variant,
    deploy,
    scenario_inventory,
)

ROOT = "/srv/orders"


def _current(host) -> str:
    return host.check_output(f"readlink {ROOT}/current").rsplit("/", 1)[-1]


def _releases(host) -> set[str]:
    return set(host.check_output(f"ls -1 {ROOT}/releases").split())


def _failed_release(output: str) -> str:
    """The release id the run's failure message names."""
    found = re.search(r"Release ([0-9a-f]{12}) ", output)
    assert found, output[-3000:]
    return found.group(1)


def _deploy_broken(all_in_one, tmp_path, fault: dict[str, str]) -> str:
    """Deploy the app with ``fault`` under a /healthz stream; assert what every broken release
    must leave behind; return the run's output (whitespace collapsed) for the test's own checks.
    The scenario's own release is deployed again only when a check failed: once they all pass,
    the host is shown to be as it was (the same release live, the same releases kept)."""
    host, address, domain, ca = all_in_one
    inventory = str(scenario_inventory())
    source = app_variant(tmp_path / "app", fault)
    before, kept = _current(host), _releases(host)
    as_before = False
    try:
        # timeout above nginx's proxy_read_timeout: a request queued on the socket unit is
        # judged by nginx's answer, not cut short by the client
        with Stream(address, domain, ca, rate=10, max_seconds=600, timeout=40) as s:
            time.sleep(2)
            run = deploy(inventory, "-e", f"django_app_source_dir={source}", json_results=True)
            time.sleep(3)
        output = " ".join((run.stdout + run.stderr).split())
        assert run.returncode != 0, output[-3000:]
        failed = _failed_release(output)
        assert failed != before
        assert len(s.results) > 50
        assert s.failures() == [], s.statuses()
        assert s.releases() == {before}, s.releases()
        assert _current(host) == before
        assert host.service("orders-gunicorn.service").is_running
        assert host.service("orders-gunicorn.socket").is_running
        assert _releases(host) == kept, f"release {failed} was not cleaned up"
        as_before = True
    finally:
        if not as_before:
            assert deploy(inventory).returncode == 0
    assert _current(host) == before
    return output


def _says(pattern: str, output: str) -> re.Match:
    said = re.search(pattern, output)
    assert said, f"no /{pattern}/ in: {output[-4000:]}"
    return said


def test_release_whose_migration_fails_is_not_switched_to(all_in_one, tmp_path):
    output = _deploy_broken(all_in_one, tmp_path, FAILING_MIGRATION)
    _says(r"was not switched to: 'Migrate once[^']*' failed \(.*drill_no_such_table", output)
    # the deploy recorded where to restore to before it ran the migration
    _says(r"Restore point before-migrate-[0-9a-f]{12} recorded at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} UTC.*"
          r"TARGET_TIME='\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00'", output)


def _name(host) -> str:
    return re.escape(host.ansible.get_variables()["inventory_hostname"])


def test_release_that_cannot_start_is_stopped_by_the_side_socket_check(all_in_one, tmp_path):
    output = _deploy_broken(all_in_one, tmp_path, FAILS_TO_START)
    _says(rf"was not switched to: it broke before any switch \({_name(all_in_one[0])}: 'The new release answers its live and "
          r"health paths on a side socket' failed: .*cannot start", output)
    assert "TASK [django_app : Migrate once" not in output, "migrate ran for a release that cannot start"


def test_release_that_fails_under_the_live_service_is_switched_back(all_in_one, tmp_path):
    host = all_in_one[0]
    before = _current(host)
    output = _deploy_broken(all_in_one, tmp_path, FAILS_UNDER_SOCKET_ACTIVATION)
    name = _name(host)
    back = _says(rf"failed after the switch on {name} \(Health of the switched release through its socket: "
                 r"orders-live-check: orders-gunicorn.service is \w+ \(systemd restarted it \d+ time\(s\)\), "
                 r".*Worker failed to boot"
                 rf".*Switched back to ([0-9a-f]{{12}}), which answers again\. The failed release was removed from {name}\.",
                 output)
    assert back.group(1) == before
