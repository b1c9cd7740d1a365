"""The private bridge of an environment, and the harness's own nftables table.

Hosts get no default route, and the machine never forwards for them (the table drops
anything routed to or from a th-* bridge), so the only peers a host has are the other
hosts of its environment and the apt proxy on the bridge address.
"""

from __future__ import annotations

import ipaddress
import json

from testhosts.spec import Spec
from testhosts.system import HarnessError, log, run

TABLE = "testhosts"
PROXY_PORT = 3149  # not apt-cacher-ng's 3142: a system-wide instance may already own that


def _links() -> list[dict]:
    return json.loads(run(["ip", "-j", "addr", "show"]).stdout or "[]")


def bridge_exists(name: str) -> bool:
    return run(["ip", "link", "show", "dev", name], check=False).returncode == 0


def bridge_ports(name: str) -> list[str]:
    """The interfaces enslaved to bridge ``name`` (the host side of its containers' veths)."""
    res = run(["ip", "-j", "link", "show", "master", name], check=False)
    return [link["ifname"] for link in json.loads(res.stdout or "[]")] if res.returncode == 0 else []


def orphaned_ports(name: str) -> list[str]:
    """Ports of bridge ``name`` whose other end is in a network namespace no process uses any
    more: a killed host's, which the kernel can keep for minutes when something still refers to
    it (its veth then blocks a boot of the host under the same name)."""
    live = {int(ns["netnsid"]) for ns in json.loads(run(["lsns", "-t", "net", "-J"]).stdout)["namespaces"]
            if str(ns.get("netnsid", "")).isdigit()}
    out = json.loads(run(["ip", "-j", "-d", "link", "show", "master", name]).stdout or "[]")
    return [link["ifname"] for link in out if "link_netnsid" in link and link["link_netnsid"] not in live]


def bridges_of_harness() -> list[str]:
    return [link["ifname"] for link in _links() if link.get("ifname", "").startswith("th-")]


def check_subnet_free(spec: Spec) -> None:
    """Refuse a subnet that any other interface or route of this machine overlaps."""
    net = spec.network
    for link in _links():
        if link.get("ifname") == spec.bridge:
            continue
        for a in link.get("addr_info", []):
            if a.get("family") != "inet":
                continue
            other = ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False)
            if other.overlaps(net):
                raise HarnessError(
                    f"subnet {net} of environment {spec.env!r} overlaps {other} on {link['ifname']}; "
                    "pick a free private /24 (testhosts_subnet / host addresses in the inventory)"
                )
    routes = json.loads(run(["ip", "-j", "route", "show"]).stdout or "[]")
    for r in routes:
        dst = r.get("dst")
        if not dst or dst == "default" or r.get("dev") == spec.bridge:
            continue
        other = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        if other.overlaps(net):
            raise HarnessError(
                f"subnet {net} of environment {spec.env!r} overlaps route {dst} via {r.get('dev')}; pick a free private /24"
            )


def bridge_up(spec: Spec) -> None:
    if not bridge_exists(spec.bridge):
        check_subnet_free(spec)
        run(["ip", "link", "add", spec.bridge, "type", "bridge"])
        log(f"bridge {spec.bridge} {spec.gateway}/{spec.network.prefixlen}")
    addr = f"{spec.gateway}/{spec.network.prefixlen}"
    have = run(["ip", "-j", "addr", "show", "dev", spec.bridge]).stdout
    if addr.split("/", maxsplit=1)[0] not in have:
        run(["ip", "addr", "flush", "dev", spec.bridge])
        run(["ip", "addr", "add", addr, "dev", spec.bridge])
    run(["ip", "link", "set", spec.bridge, "up"])
    firewall_up()


def bridge_down(name: str) -> None:
    if bridge_exists(name):
        run(["ip", "link", "del", name])
    if not bridges_of_harness():
        firewall_down()


FIREWALL = f"""
table inet {TABLE} {{
  chain input {{
    type filter hook input priority -10; policy accept;
    # the apt proxy answers loopback and the test bridges only
    tcp dport {PROXY_PORT} iifname != "lo" iifname != "th-*" drop
  }}
  chain forward {{
    type filter hook forward priority -10; policy accept;
    # no route out for test hosts, whatever ip_forward says (frames bridged between hosts
    # of one environment keep flowing, even where br_netfilter shows them to this hook)
    iifname "th-*" oifname != "th-*" drop
    oifname "th-*" iifname != "th-*" drop
  }}
}}
"""


def firewall_up() -> None:
    if run(["nft", "list", "table", "inet", TABLE], check=False).returncode == 0:
        return
    run(["nft", "-f", "-"], input=FIREWALL)


def firewall_down() -> None:
    if run(["nft", "list", "table", "inet", TABLE], check=False).returncode == 0:
        run(["nft", "delete", "table", "inet", TABLE])
