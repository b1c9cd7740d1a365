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


def test_help_lists_every_target_with_its_purpose():
    out = re.sub(r"\x1b\[[0-9;]*m", "", make("help").stdout)
    listed = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for target in ("deploy", "check", "up", "down", "test", "lint", "bench", "boot-stress"):
        assert target in listed and len(listed[target].split()) > 2, out
