"""The make interface: ENV is required where hosts are touched, and bad values change nothing."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(REPO), *args], capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize("target", ["deploy", "check", "up", "down", "bench"])
def test_missing_env_is_a_one_line_usage_error(target):
    res = make(target)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if not line.startswith("make")]
    assert lines == [f"usage: make {target} ENV=<local|production|staging>"]


@pytest.mark.parametrize("target", ["deploy", "check", "up"])
def test_unknown_env_names_the_known_ones(target):
    res = make(target, "ENV=nope")
    assert res.returncode == 2
    assert f"make {target}: unknown ENV 'nope'; use one of: local production staging" in res.stderr


@pytest.mark.parametrize("target", ["up", "down"])
def test_only_local_has_harness_hosts(target):
    res = make(target, "ENV=staging")
    assert res.returncode == 2
    assert "only ENV=local has harness hosts" in res.stderr


@pytest.mark.parametrize("args", [[], ["TARGET=yesterday"], ["TARGET=latest", "BACKUP=x.dump"],
                                  ["TARGET_TIME=2026-01-01 00:00:00+00", "TARGET=latest"]])
def test_restore_needs_exactly_one_target_or_an_export(args):
    """make restore: TARGET_TIME=... or TARGET=latest (point in time) or BACKUP=<file> (an export);
    none, two, or another TARGET is a usage error before anything runs."""
    res = make("restore", "ENV=staging", *args)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if not line.startswith("make")]
    assert lines[0] == ("usage: make restore ENV=staging TARGET_TIME='YYYY-MM-DD HH:MM:SS+00' | TARGET=latest"
                        "   (point in time, pgBackRest)")
    assert "BACKUP=<file>" in lines[1] and len(lines) == 2, res.stderr


def test_help_lists_every_target_with_its_purpose():
    out = re.sub(r"\x1b\[[0-9;]*m", "", make("help").stdout)
    listed = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for target in ("deploy", "check", "up", "down", "test", "lint", "bench", "boot-stress"):
        assert target in listed and len(listed[target].split()) > 2, out


def test_a_vault_password_file_is_never_committed():
    """`make` reads inventories/<env>/.vault-password; git ignores it in every environment
    (the local demo vault's committed vault-password.txt stays tracked)."""
    for path in ("inventories/staging/.vault-password", "inventories/my-servers/.vault-password"):
        ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path], check=False)
        assert ignored.returncode == 0, f"{path} is not ignored"
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "--error-unmatch",
                              "inventories/local/vault-password.txt"], capture_output=True, check=False)
    assert tracked.returncode == 0


@pytest.mark.parametrize("target", ["deploy", "check", "backup", "rollback", "pg-restart"])
def test_remote_environments_get_no_harness_packages_and_keep_args(target):
    """A control node for real servers needs only the Ansible toolchain: the harness's Debian
    packages (nspawn, mmdebstrap, apt-cacher-ng...) are never part of a remote target's plan;
    and ARGS (--limit, --ask-become-pass...) reach ansible-playbook in every target."""
    plan = make("-n", "-B", target, "ENV=staging", "ARGS=--limit=web1 --ask-become-pass")  # -B: every recipe
    assert plan.returncode == 0, plan.stderr
    assert "apt-harness.stamp" not in plan.stdout and "mmdebstrap" not in plan.stdout
    playbook = [line for line in plan.stdout.splitlines() if "ansible-playbook" in line]
    assert playbook and all("--limit=web1 --ask-become-pass" in line for line in playbook), playbook
