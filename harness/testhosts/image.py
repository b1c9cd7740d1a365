"""Base root filesystems, built by mmdebstrap and cached by the hash of their recipe.

The recipe is the release, the package list, the customize hook and the apt sources.
Change any of them and the next create builds a new image; an unchanged recipe reuses
the cached one (hosts only add a copy-on-write layer on top).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from testhosts import net
from testhosts.proxy import machine_mirrors
from testhosts.system import HarnessError, log, run

PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libnss-myhostname", "python3", "python3-apt",
    "iproute2", "openssh-server", "sudo", "ca-certificates",
)


def hook_text() -> str:
    return resources.files("testhosts").joinpath("data/customize-hook.sh").read_text()


def sources_text(distro: str, mirrors: tuple[str, str]) -> str:
    main, security = mirrors
    key = "/usr/share/keyrings/debian-archive-keyring.gpg"
    return (
        f"Types: deb\nURIs: {main}\nSuites: {distro} {distro}-updates\nComponents: main\nSigned-By: {key}\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {distro}-security\nComponents: main\nSigned-By: {key}\n"
    )


def recipe_hash(distro: str, mirrors: tuple[str, str]) -> str:
    h = hashlib.sha256()
    for part in (distro, " ".join(PACKAGES), hook_text(), sources_text(distro, mirrors)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


class Images:
    def __init__(self, cache: Path):
        self.dir = cache / "images"

    def path(self, distro: str) -> Path:
        return self.dir / f"{distro}-{recipe_hash(distro, machine_mirrors())}"

    def ensure(self, distro: str) -> Path:
        """Return the image for ``distro``, building it first if its recipe is new."""
        target = self.path(distro)
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f".{distro}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per release; others wait and reuse
            if (target / ".complete").exists():
                return target
            self._build(distro, target)
        return target

    def _build(self, distro: str, target: Path) -> None:
        t0 = time.monotonic()
        work = target.with_name(target.name + ".building")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        sources = work.with_name(work.name + ".sources")
        sources.write_text(sources_text(distro, machine_mirrors()))
        hook = work.with_name(work.name + ".hook.sh")
        hook.write_text(hook_text())
        hook.chmod(0o755)
        logfile = target.with_name(target.name + ".log")
        log(f"building base image {target.name} (mmdebstrap, about a minute)")
        cmd = [
            "mmdebstrap", "--variant=apt", "--include=" + ",".join(PACKAGES),
            f'--aptopt=Acquire::http::Proxy "http://127.0.0.1:{net.PROXY_PORT}"',
            f'--customize-hook={hook} "$1"',
            distro, str(work), str(sources),
        ]
        with open(logfile, "w") as out:
            res = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
        sources.unlink(missing_ok=True)
        hook.unlink(missing_ok=True)
        if res.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            tail = logfile.read_text().strip().splitlines()[-5:]
            raise HarnessError(f"mmdebstrap {distro} failed (exit {res.returncode}), see {logfile}: {' | '.join(tail)}")
        # mmdebstrap empties /var/lib/apt/lists after the hooks, so the directory looks freshly
        # updated; Ansible's apt cache_valid_time would then trust an empty cache.
        (work / "var/lib/apt/periodic/update-success-stamp").unlink(missing_ok=True)
        run(["touch", "-d", "@0", str(work / "var/lib/apt/lists")])
        (work / ".complete").write_text(f"{distro} built in {time.monotonic() - t0:.0f}s\n")
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
        log(f"base image {target.name} ready in {time.monotonic() - t0:.0f}s")

    def prune(self, keep: set[Path]) -> None:
        """Remove images of older recipes that no running host uses.

        The cache is machine-wide, so a host of another environment (or of another checkout)
        may still run on an old image: anything a live systemd-nspawn has as its root stays.
        """
        if not self.dir.exists():
            return
        current = {self.path(d) for d in ("trixie", "bookworm")}
        in_use = images_in_use()
        for p in self.dir.iterdir():
            if not p.is_dir() or p.name.endswith(".building"):
                continue
            if p in current or p in keep or p.resolve() in in_use:
                continue
            log(f"removing old base image {p.name}")
            shutil.rmtree(p, ignore_errors=True)


def images_in_use(proc: Path = Path("/proc")) -> set[Path]:
    """The root directories (-D) of every running systemd-nspawn on this machine."""
    used: set[Path] = set()
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"systemd-nspawn"):
            continue
        for flag, value in itertools.pairwise(argv):
            if flag == b"-D":
                used.add(Path(value.decode()).resolve())
    return used
