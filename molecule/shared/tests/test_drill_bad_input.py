"""Bad inventory input: a clear error that names the variable and the fix, and no change.

Each case runs `ansible/site.yml` (as `make deploy` does) against the converged all-in-one
host with one thing wrong, and checks the message and that the host is exactly as before:
no file under /etc, /srv or /usr/local newer than a marker, the same active units.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from drill import deploy, scenario_inventory

MARKER = "/run/bad-input-marker"




def host_state(host) -> str:
    """The active units, less the login sessions (each SSH command, the test's own included, is
    a session of logind: session-N.scope, user@0.service come and go with them)."""
    return host.check_output(
        "systemctl list-units --state=active --plain --no-legend | awk '{print $1}'"
        " | grep -vE '^(session-.*\\.scope|user@[0-9]+\\.service|user-runtime-dir@[0-9]+\\.service"
        "|user-[0-9]+\\.slice|run-user-[0-9]+\\.mount)$' | sort")


def changed_files(host) -> list[str]:
    out = host.check_output(f"find /etc /srv /usr/local -xdev -newer {MARKER} -not -type d 2>/dev/null || true")
    return [line for line in out.splitlines() if line]


def molecule_inventory() -> Path:
    """The scenario's hosts file (its inventory is the directory around it)."""
    return scenario_inventory() / "hosts.yml"


def inventory_copy(tmp_path: Path, edit=None) -> str:
    """A copy of the scenario's inventory directory, optionally edited."""
    src = molecule_inventory().parent
    dst = tmp_path / "inventory"
    shutil.copytree(src, dst)
    if edit:
        edit(dst)
    return str(dst / molecule_inventory().name)


def drop_db_group(inv_dir: Path) -> None:
    f = inv_dir / molecule_inventory().name
    data = yaml.safe_load(f.read_text())
    data["all"]["children"].pop("db")
    f.write_text(yaml.safe_dump(data))


def worker_not_an_app_host(inv_dir: Path) -> None:
    f = inv_dir / molecule_inventory().name
    data = yaml.safe_load(f.read_text())
    data["all"]["children"]["worker"] = {"hosts": {"ghost1": {"ansible_host": "192.0.2.99"}}}
    f.write_text(yaml.safe_dump(data))


def clear_vault(inv_dir: Path) -> None:
    d = inv_dir / "group_vars" / "web"
    d.mkdir(parents=True)
    (d / "vault.yml").write_text("vault_db_password: written-in-clear-by-mistake\n")


def drop_vault(inv_dir: Path) -> None:
    (inv_dir / "group_vars" / "all" / "vault.yml").unlink()


CASES = {
    "invalid port": (["-e", "pgbouncer_port=70000"], None, True,
                     ["pgbouncer_port=70000 is not a TCP port", "number from 1 to 65535"]),
    "invalid CIDR": (["-e", '{"common_firewall_ssh_sources": ["10.0.0.0/33"]}'], None, True,
                     ["10.0.0.0/33", "common_firewall_ssh_sources", "is not an IP address or CIDR"]),
    "zero workers": (["-e", "gunicorn_workers=0"], None, True,
                     ["gunicorn_workers=0", "set gunicorn_workers to 1 or more"]),
    "domain not a hostname": (["-e", "site_domain=not_a_host"], None, True,
                              ["Set site_domain (the public host name"]),
    "PostgreSQL major version change": (["-e", "postgresql_version=15"], None, True,
                                        ["postgresql_version", "would create a new, empty cluster"]),
    "previous Django key too short": (["-e", "django_app_secret_key_previous=too-short-to-be-a-key"], None, True,
                                      ["django_app_secret_key_previous is shorter than 50 characters",
                                       "set it to the key you are rotating away from"]),
    "missing vault secret": ([], drop_vault, False, ["Missing secret(s)", "vault_db_password", "ansible-vault encrypt"]),
    "app host with no db host": ([], drop_db_group, True, ["and one in db (a single PostgreSQL) or three or more"]),
    "vault file left in clear": ([], clear_vault, True, ["holds secrets in clear text", "ansible-vault encrypt"]),
    "worker host that is not an app host": ([], worker_not_an_app_host, True,
                                            ["The worker group has ghost1, which is not in the app group",
                                             "leave the worker group empty"]),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_with_the_fix_and_changes_nothing(all_in_one, tmp_path, case):
    args, edit, vault, messages = CASES[case]
    host = all_in_one[0]
    inventory = inventory_copy(tmp_path, edit) if edit else str(molecule_inventory())
    host.check_output(f"touch {MARKER}")
    units_before = host_state(host)
    run = deploy(inventory, *args, vault=vault)
    out = run.stdout + run.stderr
    assert run.returncode != 0, f"{case}: the run did not fail\n{out[-3000:]}"
    flat = " ".join(out.split())
    for message in messages:
        assert message in flat, f"{case}: {message!r} not in the output\n{out[-3000:]}"
    assert changed_files(host) == [], f"{case}: files changed on the host"
    assert host_state(host) == units_before, f"{case}: units changed on the host"
