"""What a drill on the control node calls to lose a test host and bring it back (brand-new, or with its disk).

    from testhosts.drill import lose_host, rebuild_host
    lose_host("m-multinode", "db1")           # SIGKILL of the whole container; its disk stays
    failed = rebuild_host("m-multinode", "db1")  # fresh disk, same name and addresses, SSH ready
    failed = revive_host("m-multinode", "db1")   # or: power on again with the disk it had

The environment of a Molecule scenario is ``m-<scenario>``; ``local`` is ENV=local. The state
and cache directories are found as the CLI finds them (TESTHOSTS_STATE, TESTHOSTS_CACHE, or the
repository's .state/testhosts and /var/cache/testhosts). Both need root, as the CLI does.
"""

from __future__ import annotations

import os
from pathlib import Path

from testhosts import env as envmod
from testhosts.system import require_root

REPO = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    return Path(os.environ.get("TESTHOSTS_STATE", REPO / ".state" / "testhosts"))


def cache_dir() -> Path:
    # machine-wide, so a fresh clone (CI) reuses base images and downloaded packages
    return Path(os.environ.get("TESTHOSTS_CACHE", "/var/cache/testhosts"))


def environment(env: str) -> envmod.Environment:
    return envmod.Environment(state_dir(), cache_dir(), env)


def lose_host(env: str, host: str) -> None:
    """Kill host ``host`` of environment ``env`` at once (no clean shutdown); others untouched."""
    e = environment(env)
    e.host(host)  # an unknown host or environment is refused before anything else
    require_root()
    e.lose(host)


def rebuild_host(env: str, host: str) -> list[str]:
    """Boot ``host`` again as a brand-new host (lost first if it runs); return units failed at boot."""
    e = environment(env)
    e.host(host)
    require_root()
    return e.rebuild(host)


def revive_host(env: str, host: str) -> list[str]:
    """Boot lost ``host`` again with the disk it had; return units failed at boot."""
    e = environment(env)
    e.host(host)
    require_root()
    return e.revive(host)
