"""The scenario's inventory is its committed example as written (docs/testing.md), and the
operator's dry run against it, `make check ENV=<env>`, reports no change after the converge.

Named to run first: right after the converge and idempotence steps, before any drill.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from drill import REPO, scenario_inventory

# what the create step substitutes in an example's hosts.yml (molecule/shared/materialise.py)
HOST_KEYS = {"ansible_host", "stack_private_address"}
LOGIN_KEYS = {"ansible_user", "ansible_ssh_private_key_file"}


def _example() -> Path:
    return REPO / "inventories" / os.environ["STACK_EXAMPLE"]


def _hosts(data: dict) -> tuple[dict, dict]:
    """(host -> its vars, host -> its groups) of a YAML inventory."""
    hvars: dict[str, dict] = {}
    groups: dict[str, set] = {}

    def walk(group: dict, name: str) -> None:
        for h, v in ((group or {}).get("hosts") or {}).items():
            groups.setdefault(h, set()).add(name)
            hvars.setdefault(h, {}).update(v or {})
        for child, sub in ((group or {}).get("children") or {}).items():
            walk(sub, child)

    walk(data["all"], "all")
    return hvars, groups


def test_the_inventory_is_the_example_with_addresses_login_and_vault_substituted():
    inv, example = scenario_inventory(), _example()
    mine, theirs = (yaml.safe_load((d / "hosts.yml").read_text()) for d in (inv, example))
    (mine_vars, mine_groups), (their_vars, their_groups) = _hosts(mine), _hosts(theirs)
    assert mine_groups == their_groups, "the same hosts in the same groups as the example"
    for h, v in their_vars.items():
        assert set(mine_vars[h]) - HOST_KEYS == set(v) - HOST_KEYS, h
        assert {k: mine_vars[h][k] for k in set(v) - HOST_KEYS} == {k: v[k] for k in set(v) - HOST_KEYS}, h
    all_mine, all_theirs = mine["all"].get("vars") or {}, theirs["all"].get("vars") or {}
    assert {k: v for k, v in all_mine.items() if k not in LOGIN_KEYS} == \
           {k: v for k, v in all_theirs.items() if k not in LOGIN_KEYS}
    assert set(all_theirs) >= {"ansible_user"}, "the example says which user Ansible logs in as"

    gv, their_gv = inv / "group_vars" / "all", example / "group_vars" / "all"
    for f in their_gv.iterdir():
        if not f.name.endswith(".example"):
            assert (gv / f.name).read_bytes() == f.read_bytes(), f"{f.name} differs from the example"
    vault = (gv / "vault.yml").read_text()
    assert vault.startswith("$ANSIBLE_VAULT;"), "the vault is encrypted, as the README says"
    assert "CHANGE-ME" not in vault
    extra = {f.name for f in gv.iterdir()} - {f.name for f in their_gv.iterdir()}
    assert extra == {"vault.yml", "zz-testhosts.yml"}, extra

    overlay = yaml.safe_load((gv / "zz-testhosts.yml").read_text())
    example_vars: dict = {}
    for f in their_gv.glob("*.yml"):
        example_vars.update(yaml.safe_load(f.read_text()) or {})
    assert not set(overlay) & (set(example_vars) | set(all_theirs)), "the overlay overrides the example"
    assert oct((inv / ".vault-password").stat().st_mode & 0o777) == "0o600"


def test_make_check_against_the_example_reports_no_change():
    """`make check ENV=<env>` (the Makefile's INVENTORY pointed at the scenario's inventory, whose
    .vault-password the Makefile finds as it finds an operator's): every host in the recap,
    changed=0, nothing failed or unreachable."""
    inv = scenario_inventory()
    stack_env = yaml.safe_load((inv / "group_vars" / "all" / "main.yml").read_text())["stack_env"]
    # an operator's shell: nothing of Molecule's (its ansible.cfg, vault script, strategy)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env["ANSIBLE_NOCOLOR"] = "1"
    run = subprocess.run(["make", "-C", str(REPO), "check", f"ENV={stack_env}", f"INVENTORY={inv}"],
                         capture_output=True, text=True, env=env, check=False, timeout=1200)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert f"--vault-password-file {inv}/.vault-password" in out, "the Makefile found the inventory's vault password"
    recap = dict(re.findall(r"^(\S+)\s+:\s+(ok=.*)$", run.stdout, re.M))
    hosts = set(_hosts(yaml.safe_load((inv / "hosts.yml").read_text()))[0])
    assert hosts <= set(recap), f"hosts missing from the recap: {hosts - set(recap)}\n{out[-3000:]}"
    for h in hosts:
        counts = dict(re.findall(r"(\w+)=(\d+)", recap[h]))
        changed = [line for line in run.stdout.splitlines() if line.startswith("changed:") and h in line]
        assert counts["changed"] == "0", f"{h}: {recap[h]}\n" + "\n".join(changed[:20])
        assert counts["failed"] == counts["unreachable"] == "0", f"{h}: {recap[h]}"


def test_ansible_logs_in_as_the_examples_user_and_becomes_root_with_sudo():
    """The example's ansible_user (a user with the control node's key and passwordless sudo on
    every test host), not root: the playbooks' become does the rest."""
    inv = scenario_inventory()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env |= {"ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    user = (yaml.safe_load((inv / "hosts.yml").read_text())["all"].get("vars") or {}).get("ansible_user")
    assert user and user != "root"
    hosts = set(_hosts(yaml.safe_load((inv / "hosts.yml").read_text()))[0])
    for become, expected in (([], user), (["--become"], "root")):
        run = subprocess.run(["ansible", "all", "-i", str(inv), "--vault-password-file", str(inv / ".vault-password"),
                              "-o", "-m", "ansible.builtin.command", "-a", "id -un", *become],
                             capture_output=True, text=True, env=env, check=False, timeout=300)
        answers = dict(re.findall(r"^(\S+) \| CHANGED \| rc=0 \| \(stdout\) (\S+)$", run.stdout, re.M))
        assert answers == dict.fromkeys(hosts, expected), run.stdout + run.stderr[-2000:]
