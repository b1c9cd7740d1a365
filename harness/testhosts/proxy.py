"""One apt-cacher-ng shared by every environment, with a private config and cache.

Nothing is written under /etc: Debian's packaged config remaps /debian to
``backends_debian``, which its postinst leaves empty on machines with deb822 sources only,
and then every /debian request fails with "503 Host not found".  The private copy names
the mirror that this machine's own apt sources use.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from testhosts import net
from testhosts.system import HarnessError, log, pid_alive, read_pid, run

APT_SOURCES = [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]


def machine_mirrors(paths: list[Path] | None = None) -> tuple[str, str]:
    """(debian, debian-security) base URLs from this machine's apt configuration.

    Registry hosts are never written into the repository: they are read here at run time.
    """
    main = security = None
    for path in paths or APT_SOURCES:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            line = line.strip()
            urls = []
            if line.startswith("URIs:"):
                urls = line.split()[1:]
            elif line.startswith("deb ") and not line.startswith("deb-src"):
                parts = [p for p in line.split()[1:] if not p.startswith("[")]
                urls = parts[:1]
            for url in urls:
                url = url.rstrip("/")
                if url.endswith("/debian-security"):
                    security = security or url
                elif url.endswith("/debian"):
                    main = main or url
    if not main:
        raise HarnessError("no Debian mirror found in this machine's apt sources (/etc/apt/sources.list.d/debian.sources)")
    return main, security or main.rsplit("/", 1)[0] + "/debian-security"


def index_urls(distro: str, mirrors: tuple[str, str]) -> list[str]:
    """The volatile index files (InRelease) that the hosts of ``distro`` fetch first."""
    main, security = mirrors
    return [f"{main}/dists/{distro}/InRelease", f"{main}/dists/{distro}-updates/InRelease",
            f"{security}/dists/{distro}-security/InRelease"]


class Proxy:
    def __init__(self, state: Path):
        self.dir = state / "acng"
        self.pidfile = self.dir / "run" / "pid"

    def running(self) -> bool:
        pid = read_pid(self.pidfile)
        return bool(pid and pid_alive(pid))

    def url_for(self, address: str) -> str:
        return f"http://{address}:{net.PROXY_PORT}"

    def up(self) -> None:
        if self.running():
            return
        exe = shutil.which("apt-cacher-ng") or "/usr/sbin/apt-cacher-ng"
        if not Path(exe).exists():
            raise HarnessError("apt-cacher-ng is not installed; run `make toolchain`")
        conf = self.dir / "conf"
        for sub in ("conf", "cache", "log", "run"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree("/etc/apt-cacher-ng", conf, dirs_exist_ok=True)
        # /debian-security is remapped by acng's built-in Remap-secdeb rule
        (conf / "backends_debian").write_text(machine_mirrors()[0] + "/\n")
        run(["chown", "-R", "apt-cacher-ng:apt-cacher-ng", str(self.dir)])
        # started by hand, in the foreground of a process we track: on machines whose
        # policy-rc.d forbids services the init script won't run it
        with open(self.dir / "log" / "daemon.out", "ab") as out:
            proc = subprocess.Popen(
                [exe, "-c", str(conf), f"CacheDir={self.dir / 'cache'}", f"LogDir={self.dir / 'log'}",
                 f"SocketPath={self.dir / 'run' / 'socket'}", "ForeGround=1", f"Port={net.PROXY_PORT}",
                 "BindAddress=0.0.0.0",
                 # Index files stay fresh for 5 minutes: hosts that boot together fetch them once.
                 # With the default (27 s) simultaneous refreshes of one InRelease by several hosts
                 # made acng fail to move the old copy aside ("File exists") and leave one apt
                 # client hanging on a half-closed connection (seen with 4 scenarios at once).
                 "FreshIndexMaxAge=300"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                user="apt-cacher-ng", group="apt-cacher-ng", extra_groups=[], close_fds=True)
        self.pidfile.write_text(str(proc.pid))
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{net.PROXY_PORT}/acng-report.html", timeout=1).read()
                log(f"apt proxy up on port {net.PROXY_PORT}")
                return
            except OSError:
                time.sleep(0.1)
        raise HarnessError(f"apt-cacher-ng did not answer on port {net.PROXY_PORT}; see {self.dir / 'log'}")

    def refresh(self, distros: list[str], attempts: int = 3) -> None:
        """Refresh the index files of ``distros`` in the proxy, one request at a time.

        Hosts that boot together fetch them at once. When several of them ask for the same stale
        InRelease in the same second, acng fails to move its old copy aside ("File exists" in
        apt-cacher.err), answers one of them with an error and closes the connection, and that
        host's apt hangs (seen: a multinode converge stuck 8 minutes in its first `apt update`).
        Refreshed here, the files stay fresh for FreshIndexMaxAge, so the hosts' requests are
        answered from the cache without a refresh."""
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{net.PROXY_PORT}"}))
        for distro in distros:
            for url in index_urls(distro, machine_mirrors()):
                for attempt in range(1, attempts + 1):
                    try:
                        with opener.open(url, timeout=60) as resp:
                            resp.read()
                        break
                    except OSError as exc:  # another environment's refresh at the same moment
                        if attempt == attempts:
                            # not fatal: the hosts then fetch it themselves, as without this step
                            log(f"apt proxy: could not refresh {url.rsplit('/dists/', 1)[-1]}: {exc}")
                        time.sleep(1)

    def down(self) -> None:
        pid = read_pid(self.pidfile)
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not pid_alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)
