"""Every long-running unit of the stack is confined by systemd: `systemd-analyze security` rates
Debian's units (nginx, PostgreSQL, PgBouncer, with the common role's drop-ins) at most 5.0 and
the units the stack writes itself (Gunicorn, Celery's worker and beat; Redis, whose Debian units
are hardened) at most 1.5; postfix, Debian's as it is, at most 5.0.
The drills (reboot, SIGKILL, planned restart) run against these same sandboxed units."""

import re

import pytest

from conftest import in_a_cluster, need

# a Patroni cluster (three or more db hosts): Patroni runs the postmaster, PgBouncer runs on the
# app hosts (docs/decisions.md §14); the same limits and the same unprivileged user apply
IN_A_CLUSTER = {"postgresql@*-main.service": ("db", "patroni.service"), "pgbouncer.service": ("app", "pgbouncer.service")}


def _where(host, group: str, pattern: str) -> tuple[str, str]:
    if in_a_cluster(host) and pattern in IN_A_CLUSTER:
        return IN_A_CLUSTER[pattern]
    return group, pattern

UNITS = [
    ("web", "nginx.service", 5.0),
    ("db", "postgresql@*-main.service", 5.0),
    ("db", "pgbouncer.service", 5.0),
    ("app", "orders-gunicorn.service", 1.5),
    ("cache", "redis-server.service", 1.5),
    # the asynchronous half (docs/decisions.md §15): the queue instance (Debian's template unit),
    # Celery's worker (on every worker host; beat on the first: test_stack_async), the local MTA
    # (Debian 13 runs postfix.service itself, Debian 12 its instance postfix@-.service)
    ("cache", "redis-server@queue.service", 1.5),
    ("app", "orders-celery.service", 1.5),
    ("app", "postfix*.service", 5.0),
]


def test_beat_exposure_at_most_1_5(host):
    need(host, "app")
    if not host.file("/etc/systemd/system/orders-celery-beat.service").exists:
        pytest.skip("beat runs on the first worker host only")
    assert host.service("orders-celery-beat.service").is_running
    out = host.check_output("systemd-analyze security --no-pager orders-celery-beat.service | tail -1")
    assert float(re.search(r"exposure level for \S+: ([0-9.]+)", out).group(1)) <= 1.5, out


def _unit(host, pattern: str) -> str:
    name = host.check_output(f"systemctl list-units --state=running --plain --no-legend '{pattern}' | awk '{{print $1}}'")
    assert name, f"no running unit matches {pattern}"
    return name


@pytest.mark.parametrize(("group", "pattern", "limit"), UNITS, ids=[u[1] for u in UNITS])
def test_exposure_at_most(host, group, pattern, limit):
    group, pattern = _where(host, group, pattern)
    need(host, group)
    unit = _unit(host, pattern)
    assert host.service(unit).is_running
    out = host.check_output(f"systemd-analyze security --no-pager {unit} | tail -1")
    exposure = float(re.search(r"exposure level for \S+: ([0-9.]+)", out).group(1))
    assert exposure <= limit, out


@pytest.mark.parametrize(("group", "pattern", "user"), [
    ("db", "postgresql@*-main.service", "postgres"),
    ("db", "pgbouncer.service", "postgres"),
])
def test_database_units_run_unprivileged_with_no_capability(host, group, pattern, user):
    group, pattern = _where(host, group, pattern)
    need(host, group)
    unit = _unit(host, pattern)
    props = dict(line.split("=", 1) for line in host.check_output(
        f"systemctl show -p User -p CapabilityBoundingSet -p ProtectSystem -p NoNewPrivileges {unit}").splitlines())
    assert props == {"User": user, "CapabilityBoundingSet": "", "ProtectSystem": "strict", "NoNewPrivileges": "yes"}
    main_pid = host.check_output(f"systemctl show -P MainPID {unit}")
    assert host.check_output(f"ps -o user= -p {main_pid}") == user


def test_nginx_workers_unprivileged_and_master_bounded(host):
    need(host, "web")
    caps = host.check_output("systemctl show -P CapabilityBoundingSet nginx.service").split()
    assert set(caps) == {"cap_chown", "cap_dac_override", "cap_setgid", "cap_setuid", "cap_net_bind_service"}
    master = host.check_output("systemctl show -P MainPID nginx.service")
    workers = set(host.check_output(f"ps -o user= --ppid {master}").split())
    assert workers == {"www-data"}
