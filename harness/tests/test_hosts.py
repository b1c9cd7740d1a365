"""Real hosts: boot, SSH, isolation, apt through the proxy, reboot, leftovers, lose and
rebuild one host, destroy.

Runs as root and boots two containers (Debian 13 and 12) on their own bridge; the tests
run in order and share the hosts, and the last one destroys them and looks for leftovers.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import struct
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
        # t12 has an SSH address apart from its service one, as the scenarios' hosts do
        {"name": "t12", "address": "10.231.91.12", "distro": "bookworm", "ssh_address": "10.231.91.112"},
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


def pings(address: str, timeout: float = 1.0) -> bool:
    """One ICMP echo (a raw socket: this machine has no ping command); True on a reply."""
    ident = os.getpid() & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"testhost"  # an even length: 16-bit words
    words = sum(struct.unpack(f"!{len(body) // 2}H", body))
    words = (words >> 16) + (words & 0xFFFF)
    csum = ~(words + (words >> 16)) & 0xFFFF
    packet = body[:2] + struct.pack("!H", csum) + body[4:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data, (src, _) = sock.recvfrom(1024)
            hl = (data[0] & 0x0F) * 4
            if src == address and data[hl] == 0 and struct.unpack("!H", data[hl + 4:hl + 6])[0] == ident:
                return True
    return False


def answers(address: str) -> bool:
    return pings(address) or envmod._port_open(address, 22)


def test_a_lost_host_stops_answering_at_once_and_keeps_its_disk(e, monkeypatch):
    """The drills' "the host is lost" (docs/decisions.md §10): SIGKILL of the whole container, not a stop."""
    from testhosts import drill

    assert sh(e, "t12", "echo before > /root/marker && sync").returncode == 0
    others = (boot_id(e, "t13"), read_pid(e.host_dir("t13") / "nspawn.pid"))
    assert pings("10.231.91.12") and pings("10.231.91.112")
    monkeypatch.setenv("TESTHOSTS_STATE", str(e.state))  # the drill helper finds this environment
    t0 = time.monotonic()
    drill.lose_host(ENV, "t12")
    assert time.monotonic() - t0 < 3
    assert envmod.cgroup_pids(ENV, "t12") == set()  # zombies count as gone (docs/decisions.md §9)
    assert not answers("10.231.91.12") and not answers("10.231.91.112")
    assert e.running_hosts() == ["t13"] and e.lost_hosts() == ["t12"]
    assert (e.host_dir("t12") / "upper/root/marker").read_text() == "before\n"
    assert (boot_id(e, "t13"), read_pid(e.host_dir("t13") / "nspawn.pid")) == others
    assert len(nspawn_pids()) == 1 and len(net.bridge_ports(SPEC.bridge)) == 1  # its veth is gone too
    e.lose("t12")  # losing a lost host is a no-op


def test_a_rebuilt_host_is_brand_new_with_the_same_name_and_addresses(e):
    others = (boot_id(e, "t13"), read_pid(e.host_dir("t13") / "nspawn.pid"))
    assert e.rebuild("t12") == []
    login = subprocess.run(
        ["ssh", "-i", str(e.key), *envmod.SSH_OPTS, f"{spec.LOGIN_USER}@10.231.91.112",
         "sudo -n sh -c 'id -un; hostname; ls /root/marker 2>&1; ip -4 -br addr show host0; "
         "cat /etc/apt/apt.conf.d/00testhosts-proxy; ls /var/lib/apt/lists | grep -c _Packages'"],
        check=False, capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    out = login.stdout.splitlines()
    assert out[:2] == ["root", "t12"]
    assert "No such file" in out[2]  # a fresh disk: what was written before the loss is gone
    assert "10.231.91.12/24" in out[3] and "10.231.91.112/32" in out[3]
    assert f"{e.proxy.url_for(SPEC.gateway)}" in out[4] and int(out[5]) >= 2
    assert (boot_id(e, "t13"), read_pid(e.host_dir("t13") / "nspawn.pid")) == others
    assert e.lost_hosts() == [] and sorted(e.running_hosts()) == ["t12", "t13"]
    assert sh(e, "t13", "timeout 3 bash -c '</dev/tcp/t12/22'").returncode == 0


def test_rebuild_of_a_running_host_loses_it_first(e, monkeypatch):
    """The CLI, as an operator or a drill would run it, on a host that still runs."""
    from testhosts import cli

    before, others = boot_id(e, "t12"), boot_id(e, "t13")
    monkeypatch.setenv("TESTHOSTS_STATE", str(e.state))
    assert cli.main(["rebuild", "--env", ENV, "--host", "t12"]) == 0
    assert boot_id(e, "t12") not in ("", before)
    assert boot_id(e, "t13") == others
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
