"""Specs: what the harness accepts, and the message it gives for what it refuses."""

import json
from pathlib import Path

import pytest

from testhosts import spec


def hosts(*pairs, distro=None):
    out = []
    for name, addr in pairs:
        h = {"name": name, "address": addr}
        if distro:
            h["distro"] = distro
        out.append(h)
    return out


def test_subnet_defaults_to_the_first_hosts_24():
    s = spec.build("local", hosts(("web1", "10.231.10.11"), ("db1", "10.231.10.12")))
    assert s.subnet == "10.231.10.0/24"
    assert s.gateway == "10.231.10.1"
    assert s.bridge == "th-local"
    assert [h.distro for h in s.hosts] == ["trixie", "trixie"]


@pytest.mark.parametrize("value, codename", [("13", "trixie"), ("12", "bookworm"), ("Bookworm", "bookworm")])
def test_release_by_number_or_codename(value, codename):
    assert spec.build("e", hosts(("h1", "10.231.10.11"), distro=value)).hosts[0].distro == codename


@pytest.mark.parametrize(
    "env, raw, subnet, message",
    [
        ("Local", hosts(("h1", "10.231.10.11")), None, "environment name 'Local' is invalid"),
        ("much-too-long-name", hosts(("h1", "10.231.10.11")), None, "1-12 characters"),
        ("e", [], None, "lists no hosts"),
        ("e", hosts(("H_1", "10.231.10.11")), None, "host name 'H_1' is invalid"),
        ("e", hosts(("h1", "nowhere")), None, "is not an IPv4 address"),
        ("e", hosts(("h1", "10.231.10.1")), None, "is the bridge's own address"),
        ("e", hosts(("h1", "10.231.10.11"), ("h2", "10.231.11.11")), None, "not a host address of subnet"),
        ("e", hosts(("h1", "10.231.10.11"), ("h1", "10.231.10.12")), None, "listed twice"),
        ("e", hosts(("h1", "10.231.10.11"), ("h2", "10.231.10.11")), None, "used by another host"),
        ("e", hosts(("h1", "8.8.8.8")), None, "private IPv4 network"),
        ("e", hosts(("h1", "10.231.10.11")), "10.231.10.0/33", "not a network in CIDR form"),
        ("e", [{"name": "h1", "address": "10.231.10.11", "distro": "sid"}], None, "unknown Debian release 'sid'"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(env, raw, subnet, message):
    with pytest.raises(spec.SpecError, match=message):
        spec.build(env, raw, subnet)


def test_extra_host_names_must_point_at_a_host():
    with pytest.raises(spec.SpecError, match="not the address of a host"):
        spec.build("e", hosts(("h1", "10.231.10.11")), extra_hosts={"site.test": "10.231.10.99"})
    with pytest.raises(spec.SpecError, match="not a valid DNS name"):
        spec.build("e", hosts(("h1", "10.231.10.11")), extra_hosts={"bad_name": "10.231.10.11"})


def test_json_round_trip():
    s = spec.build("e", hosts(("h1", "10.231.10.11")), extra_hosts={"site.test": "10.231.10.11"})
    assert spec.from_json(s.to_json()) == s


def test_json_errors():
    with pytest.raises(spec.SpecError, match="not valid JSON"):
        spec.from_json("{")
    with pytest.raises(spec.SpecError, match="must be a JSON object"):
        spec.from_json(json.dumps([1]))


def write_inventory(tmp_path: Path, hosts_yml: str, main_yml: str | None = None) -> Path:
    (tmp_path / "hosts.yml").write_text(hosts_yml)
    if main_yml is not None:
        (tmp_path / "group_vars" / "all").mkdir(parents=True)
        (tmp_path / "group_vars" / "all" / "main.yml").write_text(main_yml)
    return tmp_path


def test_inventory_lists_each_host_once_across_groups(tmp_path):
    inv = write_inventory(
        tmp_path,
        """
all:
  vars: {testhosts_subnet: 10.231.10.0/24}
  children:
    web:
      hosts:
        web1: {ansible_host: 10.231.10.11}
    app:
      vars: {testhosts_distro: bookworm}
      hosts:
        app1: {ansible_host: 10.231.10.12}
        web1:
""",
        "site_domain: orders.local.test\n",
    )
    s = spec.from_inventory(inv, "local")
    assert sorted((h.name, h.address) for h in s.hosts) == [("app1", "10.231.10.12"), ("web1", "10.231.10.11")]
    assert {h.name: h.distro for h in s.hosts}["app1"] == "bookworm"
    assert s.extra_hosts == {"orders.local.test": "10.231.10.11"}


def test_inventory_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(spec.SpecError, match="does not exist"):
        spec.from_inventory(tmp_path, "local")
    inv = write_inventory(tmp_path, "all:\n  hosts:\n    web1: {}\n")
    with pytest.raises(spec.SpecError, match="host web1 has no ansible_host"):
        spec.from_inventory(inv, "local")
    (tmp_path / "hosts.yml").write_text("web: [\n")
    with pytest.raises(spec.SpecError, match="not valid YAML"):
        spec.from_inventory(inv, "local")


def test_the_repository_local_inventory_is_valid():
    repo = Path(__file__).resolve().parents[2]
    s = spec.from_inventory(repo / "inventories" / "local", "local")
    assert s.hosts and s.extra_hosts


def test_a_host_may_have_a_second_address_for_ssh():
    """Molecule connects to ssh_address as the login user; the primary address stays the service one."""
    from testhosts import cli, env

    raw = [{"name": "web1", "address": "10.231.10.11", "ssh_address": "10.231.10.111"},
           {"name": "db1", "address": "10.231.10.12"}]
    s = spec.build("e", raw)
    assert [(h.address, h.login_address) for h in s.hosts] == [("10.231.10.11", "10.231.10.111"),
                                                                ("10.231.10.12", "10.231.10.12")]
    assert spec.from_json(s.to_json()) == s
    e = env.Environment(Path("/nonexistent"), Path("/nonexistent"), "e")
    conf = cli._instance_config(e, s)
    assert [(c["address"], c["user"]) for c in conf] == [("10.231.10.111", "deploy"), ("10.231.10.12", "deploy")]


@pytest.mark.parametrize("ssh, message", [
    ("10.231.10.12", "used by another host"),
    ("10.231.11.111", "not a host address of subnet"),
    ("nowhere", "ssh_address 'nowhere' is not an IPv4 address"),
])
def test_bad_ssh_addresses_are_refused(ssh, message):
    raw = [{"name": "web1", "address": "10.231.10.11", "ssh_address": ssh}, {"name": "db1", "address": "10.231.10.12"}]
    with pytest.raises(spec.SpecError, match=message):
        spec.build("e", raw)
