"""What an environment is made of, and how it is read from an inventory or a Molecule file.

A spec is plain data: an environment name, a /24 subnet and the hosts (name, address,
Debian release, and optionally a second address for SSH only).  Everything the harness creates is named from it, so the same spec
always gives the same bridge, addresses and cgroups.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DISTROS = {"trixie": "13", "bookworm": "12"}
# Debian major version -> codename, so inventories may say 13 or trixie.
_DISTRO_ALIASES = {v: k for k, v in DISTROS.items()} | {k: k for k in DISTROS}
DEFAULT_DISTRO = "trixie"
# Bridge names are "th-<env>" and Linux caps interface names at 15 characters.
_ENV_RE = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
_HOST_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class SpecError(ValueError):
    """An environment description that cannot be built; the message says what to fix."""


# The user the control node connects as on every test host (its key, passwordless sudo), as
# on an operator's server; the harness itself keeps root for booting and checking hosts.
LOGIN_USER = "deploy"


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # the primary address: the source of the host's traffic to its peers
    distro: str = DEFAULT_DISTRO
    # a second address on the same link (/32, so never a source for peers), where Ansible
    # connects: the SSH address of an operator's host that differs from its service address
    ssh_address: str | None = None

    @property
    def login_address(self) -> str:
        return self.ssh_address or self.address


@dataclass(frozen=True)
class Spec:
    env: str
    subnet: str
    hosts: tuple[Host, ...]
    # extra /etc/hosts names on the control node (the site name -> a web host)
    extra_hosts: dict[str, str] = field(default_factory=dict)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge(self) -> str:
        return f"th-{self.env}"

    @property
    def gateway(self) -> str:
        """The bridge's own address: the hosts' only peer outside the subnet's hosts."""
        return str(next(self.network.hosts()))

    def to_json(self) -> str:
        return json.dumps(
            {
                "env": self.env,
                "subnet": self.subnet,
                "hosts": [h.__dict__ for h in self.hosts],
                "extra_hosts": self.extra_hosts,
            },
            indent=2,
            sort_keys=True,
        )


def normalise_distro(value: object, where: str) -> str:
    key = str(value).strip().lower()
    if key not in _DISTRO_ALIASES:
        raise SpecError(
            f"{where}: unknown Debian release {value!r}; use one of "
            f"{', '.join(sorted(DISTROS))} (or {', '.join(sorted(DISTROS.values()))})"
        )
    return _DISTRO_ALIASES[key]


def build(env: str, hosts: list[dict], subnet: str | None = None, extra_hosts: dict | None = None) -> Spec:
    """Validate raw data and return a Spec, or raise SpecError naming the bad field."""
    if not _ENV_RE.match(env or ""):
        raise SpecError(
            f"environment name {env!r} is invalid: 1-12 characters, lowercase letters, digits "
            "and '-', starting with a letter (it names the bridge th-<env>)"
        )
    if not hosts:
        raise SpecError(f"environment {env!r} lists no hosts; add at least one host with an ansible_host address")
    parsed: list[Host] = []
    for raw in hosts:
        name = str(raw.get("name", ""))
        if not _HOST_RE.match(name):
            raise SpecError(f"host name {name!r} is invalid: lowercase letters, digits and '-', at most 32 characters")
        try:
            addr = ipaddress.IPv4Address(str(raw.get("address", "")))
        except ValueError:
            raise SpecError(f"host {name}: address {raw.get('address')!r} is not an IPv4 address (set ansible_host)") from None
        distro = normalise_distro(raw.get("distro", DEFAULT_DISTRO), f"host {name}")
        ssh = raw.get("ssh_address")
        if ssh is not None:
            try:
                ssh = str(ipaddress.IPv4Address(str(ssh)))
            except ValueError:
                raise SpecError(f"host {name}: ssh_address {ssh!r} is not an IPv4 address") from None
            if ssh == str(addr):
                ssh = None
        parsed.append(Host(name, str(addr), distro, ssh))

    if subnet is None:
        subnet = str(ipaddress.IPv4Network(f"{parsed[0].address}/24", strict=False))
    try:
        net = ipaddress.IPv4Network(subnet)
    except ValueError as exc:
        raise SpecError(f"subnet {subnet!r} is not a network in CIDR form: {exc}") from None
    if not net.is_private or net.prefixlen < 16 or net.prefixlen > 28:
        raise SpecError(f"subnet {subnet}: use a private IPv4 network between /16 and /28")
    gateway = next(net.hosts())

    seen_names: set[str] = set()
    seen_addrs: set[str] = set()
    for h in parsed:
        if h.name in seen_names:
            raise SpecError(f"host {h.name} is listed twice")
        seen_names.add(h.name)
        for address in filter(None, (h.address, h.ssh_address)):
            a = ipaddress.IPv4Address(address)
            if a not in net or a in (net.network_address, net.broadcast_address):
                raise SpecError(f"host {h.name}: address {address} is not a host address of subnet {net}")
            if a == gateway:
                raise SpecError(f"host {h.name}: address {address} is the bridge's own address; use .2 or higher")
            if address in seen_addrs:
                raise SpecError(f"host {h.name}: address {address} is used by another host")
            seen_addrs.add(address)

    extra = {}
    for name, addr in (extra_hosts or {}).items():
        if not _DOMAIN_RE.match(str(name)):
            raise SpecError(f"extra host name {name!r} is not a valid DNS name")
        if str(addr) not in seen_addrs:
            raise SpecError(f"extra host {name}: {addr} is not the address of a host of this environment")
        extra[str(name)] = str(addr)
    return Spec(env=env, subnet=str(net), hosts=tuple(parsed), extra_hosts=extra)


def from_json(text: str) -> Spec:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"spec is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError("spec must be a JSON object with env, hosts and optionally subnet")
    return build(data.get("env", ""), data.get("hosts") or [], data.get("subnet"), data.get("extra_hosts"))


def _walk_group(group: dict, inherited: dict, out: dict[str, dict], groups: dict[str, list[str]], gname: str) -> None:
    group = group or {}
    gvars = {**inherited, **(group.get("vars") or {})}
    for hname, hvars in (group.get("hosts") or {}).items():
        merged = {**out.get(hname, {}), **gvars, **(hvars or {})}
        out[hname] = merged
        groups.setdefault(gname, []).append(hname)
    for cname, child in (group.get("children") or {}).items():
        _walk_group(child, gvars, out, groups, cname)
        groups.setdefault(gname, []).extend(groups.get(cname, []))


def from_inventory(inventory_dir: Path, env: str) -> Spec:
    """Read the hosts an Ansible YAML inventory lists (hosts.yml is written by people).

    Host vars used: ``ansible_host`` (required) and ``testhosts_distro`` (trixie/bookworm
    or 13/12).  ``all.vars.testhosts_subnet`` is optional.  The site name
    (``site_domain`` in group_vars/all/main.yml) is pointed at the first ``web`` host.
    """
    hosts_file = inventory_dir / "hosts.yml"
    try:
        data = yaml.safe_load(hosts_file.read_text()) or {}
    except FileNotFoundError:
        raise SpecError(f"{hosts_file} does not exist; create it (see inventories/local/hosts.yml)") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{hosts_file} is not valid YAML: {exc}") from None
    if "all" not in data:
        raise SpecError(f"{hosts_file}: the top level must be 'all:'")
    hostvars: dict[str, dict] = {}
    groups: dict[str, list[str]] = {}
    _walk_group(data["all"], {}, hostvars, groups, "all")
    raw = []
    for name, hv in hostvars.items():
        if "ansible_host" not in hv:
            raise SpecError(f"{hosts_file}: host {name} has no ansible_host; give it a static address in the subnet")
        raw.append({"name": name, "address": hv["ansible_host"], "distro": hv.get("testhosts_distro", DEFAULT_DISTRO)})
    subnet = (data["all"].get("vars") or {}).get("testhosts_subnet")

    extra = {}
    main_vars = inventory_dir / "group_vars" / "all" / "main.yml"
    if main_vars.exists():
        gv = yaml.safe_load(main_vars.read_text()) or {}
        domain = gv.get("site_domain")
        web = groups.get("web") or []
        if domain and web:
            extra[str(domain)] = str(hostvars[web[0]]["ansible_host"])
    return build(env, raw, subnet, extra)
