"""nginx_tls_mode: acme against a local ACME server (docs/decisions.md §10).

On the web host: pebble (HTTPS on 127.0.0.1:14000 with a throwaway CA, http-01 on port 80)
and pebble-challtestsrv as its DNS (the site name answers with the host's address; its own
challenge servers are off), both transient systemd units. Never PEBBLE_VA_ALWAYS_VALID: the
challenge really goes through nginx's port-80 server. The nginx role alone switches the host
to acme mode (molecule/shared/acme.yml); then the test forces a renewal and checks, with
handshakes from the control node, that nginx serves a certificate with a new serial without a
restart. Finally the role runs again with the scenario's own variables, pebble stops, and
what the test installed is removed, so later tests see the host as it was.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from drill import scenario_inventory

REPO = Path(__file__).resolve().parents[3]
PLAYBOOK = REPO / "molecule" / "shared" / "acme.yml"
WORK = "/run/acme-test"
UNITS = ("acme-test-pebble", "acme-test-challtestsrv")
DIRECTORY_URL = "https://localhost:14000/dir"


def _served(address: str, domain: str) -> x509.Certificate:
    """The certificate nginx presents to a client asking for ``domain`` (SNI) at address:443."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address, 443), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=domain) as tls:
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def _issuer_cn(cert: x509.Certificate) -> str:
    return cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def _playbook(inventory: str, limit: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible" / "ansible.cfg"),
               ANSIBLE_ROLES_PATH=str(REPO / "roles"))
    cmd = ["ansible-playbook", "-i", inventory, "--limit", limit, str(PLAYBOOK)]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=900)


def _changed(run: subprocess.CompletedProcess) -> int:
    """Tasks reported changed in a playbook's recap."""
    return sum(int(n) for n in re.findall(r"\bchanged=(\d+)", run.stdout))


def _installed(host, package: str) -> bool:
    return host.run(f"dpkg-query -W -f='${{Status}}' {package} 2>/dev/null").stdout.startswith("install ok installed")


def _master_pid(host) -> str:
    return host.check_output("systemctl show -P MainPID nginx.service")


@pytest.fixture(scope="module")
def web(host):
    v = host.ansible.get_variables()
    if "web" not in v.get("group_names", []):
        pytest.skip("not a web host")
    address = str(v.get("stack_private_address") or v["ansible_host"])
    assert re.match(r"^[0-9.]+$", address), f"an IPv4 address is needed for the DNS answer, not {address}"
    return {
        "name": v["inventory_hostname"],
        "domain": str(v.get("nginx_server_name") or v["site_domain"]),
        "address": address,
        "inventory": str(scenario_inventory()),
    }


@pytest.fixture(scope="module")
def pebble(host, web, tmp_path_factory):
    """pebble + challtestsrv on the web host; yields the CA bundle (control node) for certbot."""
    before = {p: _installed(host, p) for p in ("pebble", "certbot")}
    letsencrypt_before = host.file("/etc/letsencrypt").exists
    dropins_before = host.file("/etc/systemd/system/certbot.service.d").exists
    for unit in UNITS:
        host.run(f"systemctl stop {unit} 2>/dev/null; systemctl reset-failed {unit} 2>/dev/null")
    try:
        got = host.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q pebble")
        assert got.rc == 0, got.stderr
        # a throwaway CA and a certificate for pebble's own HTTPS listener (localhost)
        pebble_conf = {"pebble": {
            "listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
            "certificate": f"{WORK}/pebble.crt", "privateKey": f"{WORK}/pebble.key",
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }}
        script = f"""set -eu
rm -rf {WORK}; mkdir -m 0700 {WORK}; cd {WORK}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \\
  -subj '/CN=acme-test throwaway CA' -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \\
  -keyout pebble.key -out pebble.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext
openssl x509 -req -in pebble.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \\
  -extfile san.ext -out pebble.crt 2>/dev/null
printf '%s' {shlex.quote(json.dumps(pebble_conf))} > pebble.json
"""
        made = host.run(f"sh -c {shlex.quote(script)}")
        assert made.rc == 0, made.stderr
        # Debian 13's challtestsrv also starts a DNS-over-HTTPS server unless told not to
        doh_off = "-doh '' " if "-doh" in host.run("/usr/bin/pebble-challtestsrv -h 2>&1").stdout else ""
        dns = host.run(
            "systemd-run --unit=acme-test-challtestsrv --property=RuntimeMaxSec=1200 "
            "/usr/bin/pebble-challtestsrv -dns01 127.0.0.1:8053 -http01 '' -https01 '' -tlsalpn01 '' "
            # Debian 12's pebble (2.4) has no DNS-over-HTTPS server, so no -doh flag to turn off
            f"{doh_off}-management 127.0.0.1:8055 -defaultIPv4 {web['address']} -defaultIPv6 ''"
        )
        assert dns.rc == 0, dns.stderr
        acme = host.run(
            "systemd-run --unit=acme-test-pebble --property=RuntimeMaxSec=1200 "
            "--setenv=PEBBLE_VA_NOSLEEP=1 --setenv=PEBBLE_WFE_NONCEREJECT=0 "
            f"/usr/bin/pebble -config {WORK}/pebble.json -dnsserver 127.0.0.1:8053"
        )
        assert acme.rc == 0, acme.stderr
        for _ in range(100):
            if host.socket("tcp://127.0.0.1:14000").is_listening and host.socket("udp://127.0.0.1:8053").is_listening:
                break
            time.sleep(0.2)
        else:
            pytest.fail("pebble or challtestsrv did not start:\n" + host.run(
                f"journalctl -u {UNITS[0]} -u {UNITS[1]} --no-pager -n 40").stdout)
        resolved = host.run(f"dig +short -p 8053 @127.0.0.1 {web['domain']} A 2>/dev/null || true").stdout.split()
        assert not resolved or resolved == [web["address"]], resolved
        bundle = tmp_path_factory.mktemp("acme") / "pebble-ca.crt"
        bundle.write_text(host.file(f"{WORK}/ca.crt").content_string)
        yield str(bundle)
    finally:
        for unit in UNITS:
            host.run(f"systemctl stop {unit} 2>/dev/null; systemctl reset-failed {unit} 2>/dev/null")
        host.run(f"rm -rf {WORK}")
        if not before["pebble"]:
            host.run("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q pebble")
        if not before["certbot"]:
            host.run("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q --autoremove certbot")
        if not dropins_before:
            host.run("rmdir /etc/systemd/system/certbot.service.d 2>/dev/null; systemctl daemon-reload")
        if not letsencrypt_before:
            host.run("rm -rf /etc/letsencrypt /var/lib/letsencrypt /var/log/letsencrypt")


def test_acme_issue_forced_renewal_and_restore(host, web, pebble):
    domain, address = web["domain"], web["address"]
    issuer_before = _issuer_cn(_served(address, domain))
    assert "pebble" not in issuer_before.lower()
    try:
        # a host without any certificate yet: the role starts nginx with a placeholder first
        host.run(f"rm -f /etc/ssl/{domain}/fullchain.pem /etc/ssl/{domain}/privkey.pem")
        acme_vars = {
            "nginx_tls_mode": "acme",
            "nginx_acme_directory_url": DIRECTORY_URL,
            "nginx_acme_email": f"ops@{domain}",
            "nginx_acme_ca_bundle": pebble,
        }
        switched = _playbook(web["inventory"], web["name"], acme_vars)
        assert switched.returncode == 0, switched.stdout[-4000:] + switched.stderr[-2000:]
        again = _playbook(web["inventory"], web["name"], acme_vars)
        assert again.returncode == 0 and _changed(again) == 0, "acme mode is not idempotent:\n" + again.stdout[-4000:]

        first = _served(address, domain)
        assert _issuer_cn(first).lower().startswith("pebble"), _issuer_cn(first)
        names = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [domain]
        assert host.service("certbot.timer").is_enabled
        assert "REQUESTS_CA_BUNDLE=" in host.check_output("systemctl show -P Environment certbot.service")
        pid = _master_pid(host)

        renewed = host.run(
            f"REQUESTS_CA_BUNDLE=/etc/ssl/{domain}/acme-ca.pem "
            f"certbot renew --force-renewal --no-random-sleep-on-renew --cert-name {domain}"
        )
        assert renewed.rc == 0, renewed.stdout + renewed.stderr
        for _ in range(50):
            second = _served(address, domain)
            if second.serial_number != first.serial_number:
                break
            time.sleep(0.2)
        assert second.serial_number != first.serial_number, "nginx still serves the old certificate"
        assert _issuer_cn(second).lower().startswith("pebble")
        assert _master_pid(host) == pid, "nginx was restarted; the deploy hook must reload it"
        assert "renew_before_expiry = " in host.file(f"/etc/letsencrypt/renewal/{domain}.conf").content_string
        # a converge after the timer's renewal finds nothing to do either
        after = _playbook(web["inventory"], web["name"], acme_vars)
        assert after.returncode == 0 and _changed(after) == 0, "drift after a renewal:\n" + after.stdout[-4000:]
        assert _served(address, domain).serial_number == second.serial_number
    finally:
        restored = _playbook(web["inventory"], web["name"])
        assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-2000:]
    assert _issuer_cn(_served(address, domain)) == issuer_before
    assert not host.file(f"/etc/letsencrypt/renewal/{domain}.conf").exists, "certbot would still renew"
    assert not host.file("/usr/local/sbin/nginx-acme-deploy").exists
