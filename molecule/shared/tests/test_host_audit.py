"""Host hardening of the common role, judged by lynis (Debian's package): a converged host
reaches a hardening index of at least 75 with no warning. lynis is the auditor, installed here
for the test only (the role does not install it). The settings behind the index are tested by
their behaviour too: sshd's effective configuration, a password login refused next to the key
login that works, kernel parameters, core dumps, needrestart never restarting a service."""

from __future__ import annotations

import subprocess

import pytest

from conftest import address_of, inventory_groups

MIN_INDEX = 75
REPORT = "/var/log/lynis-report.dat"


def audited_twin(host) -> str | None:
    """An earlier host of the inventory in exactly the same groups (app2 beside app1, db2 and
    db3 beside db1): the same roles with the same variables made it, so its audit stands for
    this one (the time budget, docs/testing.md); None when this host is the first of its kind."""
    groups = {name: members for name, members in inventory_groups(host).items() if name not in ("all", "ungrouped")}
    me = host.ansible.get_variables()["inventory_hostname"]

    def kind(name: str) -> frozenset:
        return frozenset(g for g, members in groups.items() if name in members)

    hosts = sorted({h for members in groups.values() for h in members})
    return next((h for h in hosts if h < me and kind(h) == kind(me)), None)


@pytest.fixture(scope="module")
def lynis_report(host) -> dict[str, list[str]]:
    """One `lynis audit system --quick` per kind of host (about 30 s); the report's keys to their values."""
    twin = audited_twin(host)
    if twin:
        pytest.skip(f"audited on {twin}: the same groups, the same roles")
    if not host.exists("lynis"):
        installed = host.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q lynis")
        assert installed.rc == 0, installed.stderr
    audit = host.run("timeout 300 lynis audit system --quick --no-colors")
    assert audit.rc == 0, audit.stdout[-2000:] + audit.stderr
    report: dict[str, list[str]] = {}
    for line in host.file(REPORT).content_string.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            report.setdefault(key.removesuffix("[]"), []).append(value)
    return report


def test_lynis_hardening_index_at_least_75(lynis_report):
    index = int(lynis_report["hardening_index"][0])
    suggestions = "\n".join(lynis_report.get("suggestion", []))
    assert index >= MIN_INDEX, f"hardening index {index} < {MIN_INDEX}; suggestions:\n{suggestions}"


def test_lynis_reports_no_warning(lynis_report):
    warnings = lynis_report.get("warning", [])
    assert not warnings, "lynis warnings:\n" + "\n".join(warnings)


def _sshd_settings(host) -> dict[str, str]:
    out = host.check_output("sshd -T")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_sshd_effective_settings(host):
    conf = _sshd_settings(host)
    expected = {
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "authenticationmethods": "publickey",
        "permitrootlogin": "without-password",  # prohibit-password, as sshd -T spells it
        "x11forwarding": "no",
        "allowagentforwarding": "no",
        "allowtcpforwarding": "no",
        "loglevel": "VERBOSE",
        "maxauthtries": "3",
        "clientalivecountmax": "2",
    }
    assert {k: conf.get(k) for k in expected} == expected
    # Ansible (Mitogen, ControlPersist) opens several sessions on one connection
    assert int(conf["maxsessions"]) >= 10


def test_sshd_offers_only_modern_algorithms(host):
    conf = _sshd_settings(host)
    kex, ciphers, macs = (conf[k].split(",") for k in ("kexalgorithms", "ciphers", "macs"))
    assert kex[0] in {"mlkem768x25519-sha256", "sntrup761x25519-sha512@openssh.com"}, kex
    assert not [k for k in kex if k.startswith("diffie-hellman-group") and "exchange" not in k], kex
    assert not [c for c in ciphers if c.endswith("-cbc") or c.startswith("3des")], ciphers
    assert not [m for m in macs if "sha1" in m or "md5" in m or m.startswith("umac-64")], macs
    # group exchange only with moduli of at least 3072 bits (Mozilla)
    small = host.check_output("awk '$1 !~ /^#/ && $5 < 3071' /etc/ssh/moduli | wc -l")
    assert small == "0"


def test_ssh_offers_publickey_only(host):
    # the key login works (this very connection) ...
    assert host.run("true").rc == 0
    # ... and the server offers no password or keyboard-interactive method to anyone
    probe = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-p",
         str(host.ansible.get_variables().get("common_ssh_port", 22)), f"root@{address_of(host)}", "true"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert probe.returncode == 255, probe
    assert "Permission denied (publickey)" in probe.stderr, probe.stderr


@pytest.mark.parametrize(("key", "value"), [
    ("net.ipv4.conf.all.accept_redirects", 0),
    ("net.ipv4.conf.all.send_redirects", 0),
    ("net.ipv4.conf.all.accept_source_route", 0),
    ("net.ipv4.conf.all.rp_filter", 1),
    ("net.ipv4.conf.all.log_martians", 1),
    ("net.ipv6.conf.all.accept_redirects", 0),
])
def test_network_kernel_parameters(host, key, value):
    # net.* belongs to the host's own network namespace: applied in a container too
    assert host.sysctl(key) == value


def test_no_core_dumps(host):
    assert host.check_output("bash -lc 'ulimit -c'") == "0"
    coredump = host.check_output("systemd-analyze cat-config systemd/coredump.conf")
    assert "Storage=none" in coredump
    assert "ProcessSizeMax=0" in coredump


def test_unused_kernel_modules_refused(host):
    conf = host.file("/etc/modprobe.d/stack-blacklist.conf").content_string
    for module in ("dccp", "sctp", "rds", "tipc", "usb-storage", "firewire-core"):
        assert f"install {module} /bin/false" in conf, module
    if host.exists("modprobe"):  # a VM: modprobe itself refuses (a container has no kmod)
        assert "/bin/false" in host.check_output("modprobe -n -v dccp 2>&1 || true")


def test_needrestart_lists_but_never_restarts(host):
    # the last $nrconf{restart} read wins: conf.d is read in order after needrestart.conf
    settings = host.check_output(
        "cat /etc/needrestart/needrestart.conf /etc/needrestart/conf.d/*.conf | grep -E '^\\s*\\$nrconf\\{restart\\}'")
    assert settings.splitlines()[-1].replace(" ", "") == "$nrconf{restart}='l';", settings


def test_login_sessions_get_a_private_tmpdir(host):
    # libpam-tmpdir: a login session's TMPDIR is its own (/tmp/user/<uid>, mode 0700)
    tmpdir = host.check_output("bash -lc 'echo $TMPDIR'")
    uid = host.check_output("id -u")
    assert tmpdir == f"/tmp/user/{uid}"
    assert host.file(tmpdir).mode == 0o700
