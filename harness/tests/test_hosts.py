"""Real hosts: boot, SSH, isolation, apt through the proxy, reboot, leftovers, destroy.

Runs as root and boots two containers (Debian 13 and 12) on their own bridge; the tests
run in order and share the hosts, and the last one destroys them and looks for leftovers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testhosts import env as envmod
from testhosts import net, spec
from testhosts.system import HarnessError, cgroup_roots, pid_alive, read_pid

pytestmark = [
    pytest.mark.hosts,
    pytest.mark.skipif(os.geteuid() != 0, reason="boots containers: needs root"),
]

ENV = "h-test"
SPEC = spec.build(
    ENV,
    [
        {"name": "t13", "address": "10.231.91.11", "distro": "trixie"},
        {"name": "t12", "address": "10.231.91.12", "distro": "bookworm"},
    ],
    extra_hosts={"site.h-test.test": "10.231.91.11"},
)


@pytest.fixture(scope="module")
def e(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    environment = envmod.Environment(state, Path(os.environ.get("TESTHOSTS_CACHE", "/var/cache/testhosts")), ENV)
    environment.destroy(quiet=True)
    failed = environment.create(SPEC)
    assert failed == [], f"units failed at boot: {failed}"
    yield environment
    environment.destroy(quiet=True)


def sh(e, host: str, cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    addr = next(h.address for h in SPEC.hosts if h.name == host)
    return e.ssh(addr, cmd, timeout=timeout)


def boot_id(e, host: str) -> str:
    return sh(e, host, "cat /proc/sys/kernel/random/boot_id").stdout.strip()


def nspawn_pids() -> list[int]:
    """systemd-nspawn processes (not their supervisors) running hosts of this environment."""
    out = subprocess.run(["pgrep", "-x", "systemd-nspawn"], check=False, capture_output=True, text=True).stdout
    pids = []
    for pid in map(int, out.split()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if pid_alive(pid) and any(a.startswith(f"{ENV}-".encode()) for a in argv):
            pids.append(pid)
    return pids


def test_each_host_runs_systemd_of_its_release(e):
    for name, major in (("t13", "13"), ("t12", "12")):
        res = sh(e, name, "cat /proc/1/comm; systemctl is-system-running; cut -d. -f1 /etc/debian_version; hostname")
        assert res.stdout.split() == ["systemd", "running", major, name], res.stdout + res.stderr


def test_hosts_have_their_own_ssh_host_keys(e):
    keys = {sh(e, h.name, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1] for h in SPEC.hosts}
    assert len(keys) == 2


def test_hosts_reach_each_other_and_nothing_outside(e):
    assert sh(e, "t13", "timeout 3 bash -c '</dev/tcp/t12/22'").returncode == 0
    res = sh(e, "t13", "ip route show default; timeout 3 bash -c '</dev/tcp/192.0.2.1/80'")
    assert res.returncode != 0
    assert "Network is unreachable" in res.stderr
    assert "default" not in res.stdout


def test_each_host_has_its_package_lists_from_create(e):
    """create ran each host's first apt-get update, one host at a time (env.py), so hosts that
    are converged together find fresh lists instead of refreshing them through the proxy at once."""
    for h in SPEC.hosts:
        res = sh(e, h.name, "ls /var/lib/apt/lists/ | grep -c '_Packages' ; find /var/lib/apt/lists -maxdepth 0 -mmin -30")
        count, *fresh = res.stdout.split()
        assert res.returncode == 0 and int(count) >= 2, (h.name, res.stdout, res.stderr)
        assert fresh == ["/var/lib/apt/lists"], (h.name, res.stdout)


def test_apt_installs_through_the_proxy(e):
    res = sh(e, "t12", "apt-get update -q && apt-get install -y -q --no-install-recommends jq && jq --version",
             timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1].startswith("jq-")


def test_the_machine_refuses_to_route_for_test_hosts(e):
    table = subprocess.run(["nft", "list", "table", "inet", net.TABLE], check=False, capture_output=True, text=True)
    assert table.returncode == 0
    assert 'iifname "th-*" oifname != "th-*" drop' in table.stdout
    assert f'tcp dport {net.PROXY_PORT} iifname != "lo" iifname != "th-*" drop' in table.stdout


def test_site_name_resolves_on_the_control_node(e):
    assert "10.231.91.11\tsite.h-test.test" in Path("/etc/hosts").read_text()


def test_a_reboot_inside_a_host_comes_back(e):
    before = boot_id(e, "t13")
    sh(e, "t13", "systemctl reboot")
    deadline = time.monotonic() + 90
    after = ""
    while time.monotonic() < deadline:
        time.sleep(1)
        after = boot_id(e, "t13")
        if after and after != before:
            break
    assert after and after != before, "host did not come back after reboot"
    assert sh(e, "t13", "systemctl is-system-running --wait").stdout.strip() == "running"


def test_create_again_is_a_no_op(e):
    before = {h.name: boot_id(e, h.name) for h in SPEC.hosts}
    assert e.create(SPEC) == []
    assert {h.name: boot_id(e, h.name) for h in SPEC.hosts} == before


def test_leftovers_of_a_killed_run_are_cleaned_up_on_the_next_create(e):
    before = boot_id(e, "t12")
    for d in (e.dir / "hosts").iterdir():  # what a kill -9 of the whole run would leave
        for f in ("supervisor.pid", "nspawn.pid"):
            pid = read_pid(d / f)
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    assert e.create(SPEC) == []
    assert boot_id(e, "t12") not in ("", before)
    assert len(nspawn_pids()) == 2


def test_a_subnet_in_use_elsewhere_is_refused(e):
    subprocess.run(["ip", "link", "add", "thp-probe", "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.231.93.1/24", "dev", "thp-probe"], check=True)
        clash = spec.build("h-clash", [{"name": "c1", "address": "10.231.93.11"}])
        with pytest.raises(HarnessError, match=re.escape("overlaps 10.231.93.0/24 on thp-probe")):
            net.check_subnet_free(clash)
    finally:
        subprocess.run(["ip", "link", "del", "thp-probe"], check=False)


def test_destroy_leaves_nothing_behind(e):
    e.destroy()
    assert nspawn_pids() == []
    assert envmod.cgroup_pids(ENV) == set()
    assert not any((root / "testhosts" / ENV).exists() for root in cgroup_roots())
    assert not net.bridge_exists(SPEC.bridge)
    assert not e.dir.exists()
    assert f"testhosts {ENV}" not in Path("/etc/hosts").read_text()
    assert str(e.dir) not in Path("/proc/self/mountinfo").read_text()
