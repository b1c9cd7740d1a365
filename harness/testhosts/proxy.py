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
                 # Meant to let hosts that boot together share one fetch of the index files; measured
                 # (2026-12-01), acng still re-downloads a volatile InRelease on every request, so
                 # simultaneous first updates collide anyway: env.py runs them one host at a time.
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
