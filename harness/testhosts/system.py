"""Small wrappers over the commands the harness drives, with errors that say what failed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

_T0 = time.monotonic()


class HarnessError(RuntimeError):
    """A failure the user can act on; printed as one line, without a traceback."""


def log(msg: str) -> None:
    print(f"[testhosts {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, check: bool = True, capture: bool = True, input: str | None = None,
        timeout: float | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(cmd, check=False, text=True, input=input, timeout=timeout, env=env,
                             stdout=subprocess.PIPE if capture else None,
                             stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError:
        raise HarnessError(f"command not found: {cmd[0]}") from None
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout or "").strip().splitlines()[-5:] if capture else []
        raise HarnessError(f"{' '.join(cmd[:4])}... failed (exit {res.returncode}): {' | '.join(detail)}")
    return res


def require_root() -> None:
    if os.geteuid() != 0:
        raise HarnessError("testhosts must run as root (it creates bridges, cgroups and containers); try: sudo make ...")


def require_host_support() -> None:
    """Refuse early, with the reason, on a machine that cannot run the containers."""
    missing = [c for c in ("systemd-nspawn", "mmdebstrap", "ip", "nft", "ssh", "ssh-keygen") if not shutil.which(c)]
    if missing:
        raise HarnessError(f"missing commands: {', '.join(missing)}; run `make toolchain` (installs the Debian packages)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise HarnessError("the kernel has no overlayfs (see /proc/filesystems): test hosts need it for copy-on-write roots")
    if not Path("/sys/fs/cgroup").is_dir():
        raise HarnessError("/sys/fs/cgroup is missing: containers need cgroups")
    if not os.access("/sys/fs/cgroup", os.W_OK) and not os.access(cgroup_roots()[0], os.W_OK):
        raise HarnessError("cgroups are read-only here: this machine cannot run systemd containers")


def cgroup_roots() -> list[Path]:
    """The hierarchies systemd inside a container manages.

    Hybrid hosts (v1 controllers + name=systemd + unified) need a directory of ours in both
    the name=systemd and the unified tree; a pure v2 host has one tree at the root.
    """
    base = Path("/sys/fs/cgroup")
    if (base / "systemd").is_dir():
        roots = [base / "systemd"]
        if (base / "unified").is_dir():
            roots.append(base / "unified")
        return roots
    return [base]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes: this machine's PID 1 may never reap it
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
