"""One service address per host (docs/architecture.md, "Addresses"): Ansible connects to
ansible_host, and nothing of the stack uses it; every listener, allow-list, pg_hba entry,
upstream and trusted-proxy list uses stack_private_address.

In both scenarios every host's SSH address (ansible_host, a second /32 address of the test
host) differs from its service address (the primary one, the source of its traffic to peers).
An SSH address in pg_hba, an upstream or a firewall allow-list would also break the stack
(peers' traffic comes from their service addresses), which the other tests show; these find it
by name.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess

import pytest

from conftest import tcp_connects
from drill import scenario_inventory, vault_password_file

# where the stack's services are configured on a host
CONFIG = "/etc/nginx /etc/postgresql /etc/pgbouncer /etc/redis /etc/stack /etc/systemd/system /srv/orders/current/env"


def names(address: str, text: str) -> bool:
    """Does ``text`` name ``address`` (not as part of a longer address)?"""
    return re.search(rf"(?<![\d.]){re.escape(address)}(?![\d.])", text) is not None


@pytest.fixture(scope="module")
def addresses() -> dict[str, tuple[str, str]]:
    """host -> (SSH address, service address), as Ansible reads the scenario's inventory."""
    inv = scenario_inventory()
    out = subprocess.run(["ansible-inventory", "-i", str(inv), "--vault-password-file", str(vault_password_file(inv)),
                          "--list"], capture_output=True, text=True, check=True).stdout
    hostvars = json.loads(out)["_meta"]["hostvars"]
    return {h: (str(v["ansible_host"]), str(v.get("stack_private_address", v["ansible_host"])))
            for h, v in hostvars.items()}


@pytest.fixture
def mine(host, addresses):
    name = host.ansible.get_variables()["inventory_hostname"]
    ssh, service = addresses[name]
    if ssh == service:
        pytest.skip(f"{name}: one address for SSH and service")
    return name, ssh, service


def test_ssh_goes_to_the_ssh_address_and_peers_see_the_service_address(host, mine, addresses):
    name, ssh, service = mine
    assert tcp_connects(ssh, 22), "the firewall lets SSH in on the SSH address"
    own = host.check_output("ip -4 -o addr show scope global | awk '{print $4}'").split()
    assert {a.split("/")[0] for a in own} >= {ssh, service}
    subnet = next(ipaddress.ip_interface(a).network for a in own if a.startswith(service + "/"))
    # the other hosts, or (all-in-one) the bridge's address, the only other peer on the link
    peers = [s for h, (_, s) in addresses.items() if h != name] or [str(next(subnet.hosts()))]
    for peer in peers:
        route = host.check_output(f"ip -4 route get {peer}")
        assert f"src {service} " in route + " ", f"traffic to {peer} leaves from {service}: {route}"


def test_no_service_listens_on_or_names_an_ssh_address(host, mine, addresses):
    ssh_addresses = {ssh for ssh, service in addresses.values() if ssh != service}
    listening = host.check_output("ss -Hltn | awk '{print $4}'").split()
    on_ssh = [a for a in listening if a.rsplit(":", 1)[0] in ssh_addresses]
    assert on_ssh == [], f"listeners on an SSH address: {on_ssh}"
    for address in sorted(ssh_addresses):
        named = host.run(f"grep -rlwF {address} {CONFIG} 2>/dev/null").stdout.split()
        assert named == [], f"{address} (an SSH address) is in the stack's configuration: {named}"
    nft = host.check_output("nft list table inet stack")
    assert not [a for a in ssh_addresses if names(a, nft)], f"an SSH address in the firewall's allow-lists:\n{nft}"


def test_tier_ports_admit_peers_by_service_address(host, mine, addresses):
    """The firewall names each peer that may reach a tier port by its service address."""
    name, _, _ = mine
    v = host.ansible.get_variables()
    groups = v.get("groups", {})
    nft = host.check_output("nft list table inet stack")
    expected = []
    if "db" in v["group_names"] or "cache" in v["group_names"]:
        expected = [addresses[h][1] for h in groups.get("app", []) if h != name]
    elif "app" in v["group_names"]:
        expected = [addresses[h][1] for h in groups.get("web", []) if h != name]
    if not expected:
        pytest.skip(f"{name} has no tier port for other hosts")
    for service in expected:
        assert names(service, nft), f"{service} is not admitted by {name}'s firewall:\n{nft}"
