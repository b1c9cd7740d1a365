"""Create, supervise and destroy the hosts of one environment; lose and rebuild one host.

Layout on the machine (``S`` = the repo's state dir, ``C`` = the machine-wide cache):
  S/id_ed25519                        the control node's SSH key for every test host
  S/envs/<env>/spec.json              what was created (destroy works from this alone)
  S/envs/<env>/hosts/<host>/upper     the host's copy-on-write layer over its base image
  S/envs/<env>/hosts/<host>/console.log, supervisor.pid, nspawn.pid
  S/envs/<env>/hosts/<host>/lost      when the host was lost (killed; see Environment.lose)
  C/images/<release>-<recipe hash>    base images (see image.py); C/acng: the apt proxy
  /sys/fs/cgroup/{systemd,unified}/testhosts/<env>/<host>   one cgroup per container
Names carry the environment, so a cleanup of one environment never touches another.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from testhosts import net
from testhosts.image import Images
from testhosts.proxy import Proxy
from testhosts.spec import LOGIN_USER, Host, Spec, from_json
from testhosts.system import HarnessError, cgroup_roots, log, pid_alive, read_pid, run

SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
]
REBOOT_STATUS = 133  # systemd-nspawn's exit status when the container asked for a reboot
HOSTS_FILE = Path("/etc/hosts")


def cgroup_dirs(env: str, host: str | None = None) -> list[Path]:
    rel = Path("testhosts", env, host) if host else Path("testhosts", env)
    return [root / rel for root in cgroup_roots()]


def cgroup_pids(env: str, host: str | None = None) -> set[int]:
    """Live processes (zombies count as gone) of an environment's cgroups, or of one host's."""
    pids: set[int] = set()
    for top in cgroup_dirs(env, host):
        if not top.exists():
            continue
        for procs in top.rglob("cgroup.procs"):
            try:
                pids.update(int(p) for p in procs.read_text().split())
            except (FileNotFoundError, ValueError):
                pass
    return {p for p in pids if pid_alive(p)}


def remove_cgroup_tree(top: Path) -> None:
    if not top.exists():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass
    try:
        top.rmdir()
    except OSError:
        pass


def etc_hosts_block(env: str, lines: list[str], path: Path = HOSTS_FILE) -> None:
    """Own one marked block of the machine's /etc/hosts; an empty list removes it."""
    begin, end = f"# BEGIN testhosts {env}", f"# END testhosts {env}"
    text = path.read_text() if path.exists() else ""
    kept, inside = [], False
    for line in text.splitlines():
        if line == begin:
            inside = True
        elif line == end:
            inside = False
        elif not inside:
            kept.append(line)
    if lines:
        kept += [begin, *lines, end]
    new = "\n".join(kept) + "\n"
    if new != text:
        # rewrite in place: /etc/hosts may be a bind mount that a rename would not replace
        with open(path, "w") as f:
            f.write(new)


class Environment:
    def __init__(self, state: Path, cache: Path, env: str):
        self.state = state
        self.cache = cache
        self.name = env
        self.dir = state / "envs" / env
        self.key = state / "id_ed25519"
        self.images = Images(cache)
        self.proxy = Proxy(cache)

    # ---------------------------------------------------------------- helpers
    def host_dir(self, host: str) -> Path:
        return self.dir / "hosts" / host

    def recorded_spec(self) -> Spec | None:
        try:
            return from_json((self.dir / "spec.json").read_text())
        except FileNotFoundError:
            return None

    def host(self, name: str) -> tuple[Spec, Host]:
        """The recorded spec and its host ``name``, or a HarnessError that lists the known hosts."""
        rec = self.recorded_spec()
        if rec is None:
            raise HarnessError(f"environment {self.name!r} has no recorded spec ({self.dir / 'spec.json'}): "
                               "create it first")
        for h in rec.hosts:
            if h.name == name:
                return rec, h
        raise HarnessError(f"no host {name!r} in environment {self.name!r}; its hosts: "
                           f"{', '.join(h.name for h in rec.hosts)}")

    def lost_hosts(self) -> list[str]:
        return sorted(d.name for d in (self.dir / "hosts").glob("*") if (d / "lost").exists())

    def ensure_key(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        if not self.key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testhosts", "-f", str(self.key)])

    def ssh(self, address: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(["ssh", "-i", str(self.key), *SSH_OPTS, f"root@{address}", command], check=False, timeout=timeout)

    def running_hosts(self) -> list[str]:
        hosts = []
        for d in sorted((self.dir / "hosts").glob("*")):
            pid = read_pid(d / "supervisor.pid")
            if pid and pid_alive(pid):
                hosts.append(d.name)
        return hosts

    def is_up(self, spec: Spec) -> bool:
        """Every host of ``spec`` runs, as recorded, and answers on SSH."""
        rec = self.recorded_spec()
        if rec != spec or sorted(self.running_hosts()) != sorted(h.name for h in spec.hosts):
            return False
        return all(_port_open(h.address, 22) for h in spec.hosts)

    # ---------------------------------------------------------------- create
    def create(self, spec: Spec) -> list[str]:
        """Boot every host of ``spec``; return the failed units found at boot."""
        if self.is_up(spec):
            log(f"environment {spec.env}: all {len(spec.hosts)} hosts already running")
            return []
        self.destroy(quiet=True)  # leftovers of a killed run, or a changed spec
        self.ensure_key()
        self.proxy.up()
        images = {d: self.images.ensure(d) for d in sorted({h.distro for h in spec.hosts})}
        self.images.prune(keep=set(images.values()))
        net.bridge_up(spec)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "spec.json").write_text(spec.to_json())
        etc_hosts_block(spec.env, [f"{a}\t{n}" for n, a in sorted(spec.extra_hosts.items())])
        for h in spec.hosts:
            self._start(spec, h, images[h.distro])
        failed: list[str] = []
        errors: list[str] = []

        def wait(h: Host) -> None:
            try:
                failed.extend(f"{h.name}: {u}" for u in self.wait_ready(h))
            except HarnessError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=wait, args=(h,)) for h in spec.hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise HarnessError("; ".join(errors))
        for h in spec.hosts:
            self._add_login_user(h)
        self._first_package_lists(spec.hosts)
        log(f"environment {spec.env}: {len(spec.hosts)} hosts up on {spec.bridge} ({spec.subnet})")
        return failed

    def _add_login_user(self, h: Host) -> None:
        """The user the control node connects as (LOGIN_USER): the harness's key, passwordless sudo."""
        u = LOGIN_USER
        res = self.ssh(h.address, (
            f"id -u {u} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {u}; "
            f"install -d -m 0700 -o {u} -g {u} /home/{u}/.ssh && "
            f"install -m 0600 -o {u} -g {u} /root/.ssh/authorized_keys /home/{u}/.ssh/authorized_keys && "
            f"printf '%s ALL=(ALL) NOPASSWD: ALL\\n' {u} > /etc/sudoers.d/{u} && chmod 0440 /etc/sudoers.d/{u} && "
            f"visudo -cq -f /etc/sudoers.d/{u}"))
        if res.returncode != 0:
            raise HarnessError(f"host {h.name}: could not add user {u}: {(res.stdout + res.stderr).strip()}")

    def _first_package_lists(self, hosts: tuple[Host, ...] | list[Host], timeout: int = 120) -> None:
        """Each host's first `apt-get update`, one host at a time.

        Hosts converged together otherwise fetch the same InRelease files through the shared proxy
        in the same second. apt-cacher-ng re-downloads a volatile file on every request (whatever
        FreshIndexMaxAge says), and two downloads of one file in one second collide ("Failure to
        move file ... out of the way ... File exists" in apt-cacher.err): one host gets an error
        and its apt hangs for good (seen twice in a row: multinode's db1 stuck in its first
        `apt update`). With fresh lists here, the common role's update (cache_valid_time) is a
        no-op. A failure is not fatal: the role updates the lists itself then."""
        for h in hosts:
            try:
                res = self.ssh(h.address, f"timeout -k 5 {timeout} apt-get -q -o Acquire::Retries=3 update",
                               timeout=timeout + 30)
            except subprocess.TimeoutExpired:
                log(f"host {h.name}: first apt-get update did not end within {timeout + 30} s")
                continue
            if res.returncode != 0:
                tail = (res.stdout + res.stderr).strip().splitlines()[-3:]
                log(f"host {h.name}: first apt-get update failed ({res.returncode}): {' | '.join(tail)}")

    def _write_host_files(self, spec: Spec, h: Host, upper: Path) -> None:
        def put(rel: str, text: str, mode: int = 0o644) -> None:
            p = upper / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
            p.chmod(mode)

        put("etc/systemd/network/10-host0.network",
            f"[Match]\nName=host0\n\n[Network]\nAddress={h.address}/{spec.network.prefixlen}\n"
            # the SSH address as a /32: no route of its own, so never the source towards peers
            + (f"Address={h.ssh_address}/32\n" if h.ssh_address else "")
            + "LinkLocalAddressing=no\nIPv6AcceptRA=no\n# no Gateway: a test host has no route out\n")
        put("etc/apt/apt.conf.d/00testhosts-proxy",
            f'Acquire::http::Proxy "{self.proxy.url_for(spec.gateway)}";\n')
        put("etc/hostname", h.name + "\n")
        peers = "".join(f"{o.address}\t{o.name}\n" for o in spec.hosts)
        put("etc/hosts", f"127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n{peers}")
        (upper / "root/.ssh").mkdir(parents=True, exist_ok=True)
        (upper / "root/.ssh").chmod(0o700)
        put("root/.ssh/authorized_keys", (self.key.with_suffix(".pub")).read_text(), 0o600)

    def _start(self, spec: Spec, h: Host, image: Path) -> None:
        d = self.host_dir(h.name)
        shutil.rmtree(d, ignore_errors=True)
        upper = d / "upper"
        upper.mkdir(parents=True)
        self._write_host_files(spec, h, upper)
        (d / "image").write_text(str(image))
        self._launch(spec, h, image)

    def _launch(self, spec: Spec, h: Host, image: Path) -> None:
        """Boot host ``h`` on ``image`` with the overlay upper dir it has (new or kept)."""
        d = self.host_dir(h.name)
        for port in net.orphaned_ports(spec.bridge):  # a killed host's namespace the kernel keeps
            run(["ip", "link", "delete", port])
        upper = d / "upper"
        nspawn = [
            "systemd-nspawn", "-q", "-D", str(image), f"--overlay={image}:{upper}:/",
            "-M", f"{spec.env}-{h.name}", f"--hostname={h.name}", "-b",
            # no machined and no systemd on the machine: don't register, don't ask for a scope
            "--register=no", "--keep-unit",
            f"--network-bridge={spec.bridge}",
            # a bind-mounted /etc/localtime makes tzdata's postinst fail with EBUSY
            "--timezone=off", "--resolv-conf=off", "--console=read-only",
        ]
        cmd = [sys.executable, "-m", "testhosts", "_supervise", str(d), ",".join(map(str, cgroup_dirs(spec.env, h.name))),
               "--", *nspawn]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        with open(d / "console.log", "ab") as console:
            subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env, close_fds=True)

    def wait_ready(self, h: Host, timeout: float = 180) -> list[str]:
        """Wait for SSH and the end of boot; return the units that failed."""
        d = self.host_dir(h.name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = read_pid(d / "supervisor.pid")
            if pid is not None and not pid_alive(pid):
                tail = (d / "console.log").read_text(errors="replace").strip().splitlines()[-8:]
                raise HarnessError(f"host {h.name} stopped while booting: {' | '.join(tail)}")
            if _port_open(h.address, 22):
                res = self.ssh(h.address, "systemctl is-system-running --wait; "
                               "systemctl --failed --plain --no-legend | cut -d' ' -f1", timeout=120)
                if res.returncode == 255:  # sshd not quite ready yet
                    time.sleep(0.3)
                    continue
                lines = res.stdout.split()
                state, failed = (lines[0] if lines else "unknown"), lines[1:]
                if state not in ("running", "degraded"):
                    raise HarnessError(f"host {h.name}: boot ended in state {state!r}")
                return failed
            time.sleep(0.2)
        raise HarnessError(f"host {h.name} ({h.address}) did not answer SSH within {timeout:.0f}s; see {d / 'console.log'}")

    # ---------------------------------------------------------------- lose, rebuild
    def lose(self, name: str, timeout: float = 10) -> None:
        """Lose host ``name`` at once, as a machine whose power is cut: SIGKILL, no clean shutdown.

        Its supervisor is killed first (so it does not start the host again, as after a reboot),
        then every process of the host's cgroup (cgroup.kill where the kernel has it, then
        SIGKILL of whatever is left, until none is alive; zombies count as gone, docs/decisions.md §9).
        The host's disk (its overlay's upper dir) stays until ``rebuild`` or ``destroy``. The
        other hosts of the environment are not touched. Losing a lost host is a no-op."""
        spec, _ = self.host(name)
        d = self.host_dir(name)
        sup = read_pid(d / "supervisor.pid")
        if sup and pid_alive(sup) and _is_supervisor(sup, self.dir):
            os.kill(sup, signal.SIGKILL)
        for top in cgroup_dirs(self.name, name):
            try:
                (top / "cgroup.kill").write_text("1")  # the whole subtree at once (cgroup v2)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while left := cgroup_pids(self.name, name):
            if time.monotonic() > deadline:
                raise HarnessError(f"host {name}: processes {sorted(left)} survived SIGKILL for {timeout:.0f}s")
            _sigkill(left)
            time.sleep(0.05)
        # the kernel removes the host's veth with its network namespace, a moment later: wait for
        # it, or a rebuild right after may find the name taken and nspawn fail ("File exists")
        while (len(net.bridge_ports(spec.bridge)) > len(self.running_hosts()) or (sup and pid_alive(sup))) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        if d.exists() and not (d / "lost").exists():
            (d / "lost").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
        log(f"host {self.name}/{name}: lost (killed); its disk stays in {d / 'upper'} until rebuild or destroy")

    def rebuild(self, name: str) -> list[str]:
        """Bring host ``name`` back as a brand-new host; return the units that failed at boot.

        The host is lost first if it still runs; then its overlay is wiped and it boots from
        its base image with the recorded spec (same name and addresses), as ``create`` boots
        it: ready, login user added, first package lists. Other hosts are not touched."""
        spec, h = self.host(name)
        self.lose(name)
        d = self.host_dir(name)
        self._unmount_under(d)
        for top in cgroup_dirs(self.name, name):
            remove_cgroup_tree(top)
        recorded = Path((d / "image").read_text().strip()) if (d / "image").exists() else None
        # the same base image; a newer one of the release if that one was pruned meanwhile
        image = recorded if recorded and (recorded / ".complete").exists() else self.images.ensure(h.distro)
        self.ensure_key()
        self.proxy.up()
        net.bridge_up(spec)
        self._start(spec, h, image)
        failed = self.wait_ready(h)
        self._add_login_user(h)
        self._first_package_lists([h])
        log(f"host {self.name}/{name}: rebuilt brand-new at {h.address}"
            + (f" (ssh {h.ssh_address})" if h.ssh_address else ""))
        return [f"{name}: {u}" for u in failed]

    def revive(self, name: str) -> list[str]:
        """Power a lost host on again with its disk as the kill left it; return units failed at boot.

        The counterpart of ``lose`` for a host that comes back (a power cut, then power): the
        same overlay upper dir, so its services find their data as SIGKILL left it. A host that
        runs is refused; a host that was never created or was rebuilt since is booted as is."""
        spec, h = self.host(name)
        d = self.host_dir(name)
        if cgroup_pids(self.name, name):
            raise HarnessError(f"host {self.name}/{name} runs: lose it first")
        if not (d / "upper").is_dir():
            raise HarnessError(f"host {self.name}/{name} has no disk to boot from ({d / 'upper'})")
        self._unmount_under(d)
        for top in cgroup_dirs(self.name, name):
            remove_cgroup_tree(top)
        recorded = Path((d / "image").read_text().strip()) if (d / "image").exists() else None
        image = recorded if recorded and (recorded / ".complete").exists() else self.images.ensure(h.distro)
        self.proxy.up()
        net.bridge_up(spec)
        # the killed host's veth goes with its network namespace, a moment after the kill: a
        # boot before that fails ("File exists")
        deadline = time.monotonic() + 10
        while len(net.bridge_ports(spec.bridge)) > len(self.running_hosts()) and time.monotonic() < deadline:
            time.sleep(0.1)
        (d / "lost").unlink(missing_ok=True)
        (d / "supervisor.pid").unlink(missing_ok=True)  # the killed supervisor's: wait_ready reads the new one
        self._launch(spec, h, image)
        failed = self.wait_ready(h)
        log(f"host {self.name}/{name}: powered on again with its disk at {h.address}")
        return [f"{name}: {u}" for u in failed]

    # ---------------------------------------------------------------- destroy
    def destroy(self, quiet: bool = False, grace: float = 30) -> None:
        """Stop every host (cleanly if it can), then remove all that the environment made."""
        rec = self.recorded_spec()
        sups = [p for p in (read_pid(d / "supervisor.pid") for d in (self.dir / "hosts").glob("*")) if p]
        sups = [p for p in sups if pid_alive(p) and _is_supervisor(p, self.dir)]
        stray = cgroup_pids(self.name)
        if not quiet or sups or stray:
            log(f"environment {self.name}: stopping {len(sups)} hosts")
        for p in sups:
            os.kill(p, signal.SIGTERM)  # forwarded to nspawn: an orderly poweroff of the container
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(pid_alive(p) for p in sups):
            time.sleep(0.1)
        for _ in range(50):  # whatever did not stop in time, and leftovers of a killed run
            left = cgroup_pids(self.name) | {p for p in sups if pid_alive(p)}
            if not left:
                break
            _sigkill(left)
            time.sleep(0.1)
        else:
            raise HarnessError(f"environment {self.name}: processes {sorted(left)} survived SIGKILL")
        for top in cgroup_dirs(self.name):
            remove_cgroup_tree(top)
        self._unmount_under(self.dir)
        bridge = rec.bridge if rec else f"th-{self.name}"
        net.bridge_down(bridge)
        etc_hosts_block(self.name, [])
        shutil.rmtree(self.dir, ignore_errors=True)
        if not net.bridges_of_harness():
            self.proxy.down()
            for root in cgroup_roots():
                try:
                    (root / "testhosts").rmdir()
                except OSError:
                    pass

    @staticmethod
    def _unmount_under(path: Path) -> None:
        prefix = str(path.resolve())
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            run(["umount", "-l", m], check=False)


def _sigkill(pids) -> None:
    """SIGKILL each process of ``pids`` that still exists."""
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _is_supervisor(pid: int, env_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    return b"_supervise" in cmdline and any(str(env_dir).encode() in part for part in cmdline)


def supervise(host_dir: Path, cgroups: list[Path], nspawn: list[str]) -> int:
    """Run one container; start it again when it reboots (exit 133), stop on SIGTERM."""
    (host_dir / "supervisor.pid").write_text(str(os.getpid()))
    stopping = False
    child: subprocess.Popen | None = None

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def join_cgroups() -> None:
        # With --keep-unit nspawn makes payload/ and supervisor/ below its own cgroup: give
        # every container its own, or their systemds create and remove each other's cgroups.
        for cg in cgroups:
            cg.mkdir(parents=True, exist_ok=True)
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    while True:
        # the supervisor has no threads, so preexec_fn is safe here
        child = subprocess.Popen(nspawn, stdin=subprocess.DEVNULL, preexec_fn=join_cgroups)  # noqa: PLW1509
        (host_dir / "nspawn.pid").write_text(str(child.pid))
        rc = child.wait()
        if rc == REBOOT_STATUS and not stopping:
            print(f"testhosts: {host_dir.name} rebooted; starting it again", flush=True)
            for cg in cgroups:
                for sub in ("payload", "supervisor"):
                    remove_cgroup_tree(cg / sub)
            continue
        (host_dir / "nspawn.pid").unlink(missing_ok=True)
        return 0 if stopping else rc
