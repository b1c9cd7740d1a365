"""The app tier on its host: Gunicorn's socket + service, sandbox, releases, secrets."""

import json

import pytest

from conftest import need

ROOT = "/srv/orders"
UNIT = "orders-gunicorn"


@pytest.fixture(autouse=True)
def _app_hosts_only(host):
    need(host, "app")


@pytest.mark.parametrize("unit", [f"{UNIT}.socket", f"{UNIT}.service"])
def test_units_active_and_enabled(host, unit):
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled


def test_socket_only_for_nginx_group(host):
    sock = host.file(f"/run/{UNIT}/gunicorn.sock")
    assert sock.is_socket
    assert (sock.user, sock.group, sock.mode) == ("root", "www-data", 0o660)
    # the socket unit holds it: it stays while the service restarts
    assert host.check_output(f"systemctl show -P Listen {UNIT}.socket").startswith(f"/run/{UNIT}/gunicorn.sock")


def test_workers_unprivileged_and_preloaded(host):
    main_pid = host.check_output(f"systemctl show -P MainPID {UNIT}.service")
    users = set(host.check_output(f"ps -o user= --ppid {main_pid} -p {main_pid}").split())
    assert users == {"orders"}
    cmdline = host.check_output(f"systemctl show -P ExecStart {UNIT}.service")
    assert "--preload" in cmdline and "--max-requests-jitter" in cmdline


def test_service_sandbox_properties(host):
    props = dict(
        line.split("=", 1)
        for line in host.check_output(
            f"systemctl show -p ProtectSystem -p ProtectHome -p NoNewPrivileges -p PrivateTmp -p User {UNIT}.service"
        ).splitlines()
    )
    assert props == {"ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                     "PrivateTmp": "yes", "User": "orders"}


def test_logs_go_to_the_journal(host):
    # the whole boot, not the last lines: on a busy host the request log buries the start
    assert host.run(f"journalctl -b -u {UNIT}.service --no-pager | grep -q 'Booting worker'").rc == 0


def test_current_release_and_env_file(host):
    current = host.file(f"{ROOT}/current")
    assert current.is_symlink
    release = current.linked_to.rsplit("/", 1)[-1]
    env = host.file(f"{ROOT}/current/env")
    assert (env.user, env.group, env.mode) == ("root", "orders", 0o640)
    assert f"DJANGO_RELEASE='{release}'" in env.content_string
    livez = json.loads(host.check_output(f"curl -fsS --unix-socket /run/{UNIT}/gunicorn.sock http://localhost/livez"))
    assert livez["release"] == release


def test_app_user_cannot_write_its_code(host):
    denied = host.run(f"runuser -u orders -- touch {ROOT}/current/venv/probe")
    assert denied.rc != 0
    allowed = host.run(f"runuser -u orders -- sh -c 'touch {ROOT}/shared/media/.probe && rm {ROOT}/shared/media/.probe'")
    assert allowed.rc == 0, allowed.stderr


def test_check_deploy_passes_with_the_deployed_env(host):
    done = host.run("orders-manage check --deploy --fail-level WARNING")
    assert done.rc == 0, done.stdout + done.stderr
    assert "no issues (0 silenced)" in done.stdout


def test_wrapper_refuses_non_root(host):
    done = host.run("runuser -u nobody -- /usr/local/bin/orders-manage check")
    assert done.rc == 2 and "run it as root" in done.stderr
