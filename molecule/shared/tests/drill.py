"""Tools of the drills: a bounded request stream, `make deploy` against the scenario, and
copies of the app with a planted fault (new app versions that must not go live).

The stream shows what clients see while something breaks or changes: every request's status
(or the connection error) and, for /healthz, the release id that answered. It is aimed only at
the test host's address, at a fixed rate, and stops by itself after ``max_seconds``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
APP = REPO / "app"


def scenario_inventory() -> Path:
    """The scenario's inventory: its example (inventories/staging or production) as an operator
    fills it in, with its own vault and .vault-password; made by the create step (molecule.yml's
    STACK_INVENTORY, molecule/shared/materialise.py)."""
    return Path(os.environ["STACK_INVENTORY"])


def vault_password_file(inventory: str | Path) -> Path:
    """The vault password of an inventory directory (or of the directory of its hosts file)."""
    inv = Path(inventory)
    return (inv if inv.is_dir() else inv.parent) / ".vault-password"


def deploy(inventory: str, *args: str, vault: bool = True, playbook: str = "site.yml",
           json_results: bool = False) -> subprocess.CompletedProcess:
    """Run an ansible/ playbook as `make deploy` does, against the scenario's (or a copied) inventory;
    ``vault``: with the inventory's vault password (as the Makefile finds it).

    ``json_results``: task results as one-line JSON, so a failure message can be searched as the
    play wrote it (the YAML results and the [ERROR] lines wrap long lines, even inside words).
    """
    cmd = ["ansible-playbook", "-i", inventory, str(REPO / "ansible" / playbook), *args]
    if vault:
        cmd += ["--vault-password-file", str(vault_password_file(inventory))]
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    if json_results:
        env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "json"
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    env.pop("ANSIBLE_FORCE_COLOR", None)  # Molecule sets it, and it wins over ANSIBLE_NOCOLOR: plain text to search
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=900)


def app_variant(dest: Path, append: dict[str, str]) -> Path:
    """A copy of app/ at ``dest`` with text appended to some of its files (created if missing).

    Deployed with ``-e django_app_source_dir=<dest>``: the role builds its wheel from the copy,
    so it is a new app version with a release id of its own; app/ itself is never touched.
    """
    shutil.copytree(APP, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info",
                                                             ".pytest_cache"))
    for relative, text in append.items():
        with open(dest / relative, "a", encoding="utf-8") as f:
            f.write(text)
    return dest


# A migration that fails (the table does not exist): its release must not go live. It follows
# the app's newest migration of the orders app (another leaf would be a conflict, not a failure).
_LATEST_ORDERS_MIGRATION = max(p.stem for p in (REPO / "app/apps/orders/migrations").glob("[0-9][0-9][0-9][0-9]_*.py"))
FAILING_MIGRATION = {"apps/orders/migrations/9999_drill_fails.py": f"""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("orders", "{_LATEST_ORDERS_MIGRATION}")]
    operations = [migrations.RunSQL("UPDATE drill_no_such_table SET x = 1", migrations.RunSQL.noop)]
"""}

# Gunicorn cannot import the app at all: any start of it fails, the side-socket check included.
FAILS_TO_START = {"config/wsgi.py": """
raise RuntimeError("drill: this release cannot start")
"""}

# Starts on the deploy's side socket, fails only under the live service: a stand-in for faults
# that only the real service shows (its sandbox, its socket unit, preload). Where Gunicorn was
# started by the socket unit (LISTEN_FDS set) every worker exits at once with Gunicorn's "failed
# to boot" status, so the master, which has already told systemd it is ready, gives up.
FAILS_UNDER_SOCKET_ACTIVATION = {"config/wsgi.py": """
if os.environ.get("LISTEN_FDS"):
    os.register_at_fork(after_in_child=lambda: os._exit(3))
"""}


def ca_file(hostvars: dict) -> str:
    """The CA of the site's certificate: the local CA the nginx role exported for this environment,
    or, for nginx_tls_mode: files, the throwaway CA the create step made the scenario's files with."""
    if hostvars.get("nginx_tls_mode") == "files":
        return str(scenario_inventory() / "tls" / "ca.crt")
    return str(REPO / ".state" / hostvars["stack_env"] / "ca.crt")


def https_request(address: str, domain: str, ca: str, method: str, path: str, *, headers: dict | None = None,
                  body: bytes | None = None, timeout: float = 5.0) -> tuple[int, list, bytes]:
    """``method`` https://<domain><path>, connecting to ``address`` (SNI and Host are the domain):
    (status, response headers as (name, value) pairs, body)."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection((address, 443), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=domain) as tls:
        conn = http.client.HTTPConnection(domain, timeout=timeout)
        conn.sock = tls
        conn.request(method, path, body=body, headers={"Host": domain, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()


def https_get(address: str, domain: str, ca: str, path: str, headers: dict | None = None, *,
              timeout: float = 5.0) -> tuple[int, bytes]:
    """GET https://<domain><path>, connecting to ``address`` (SNI and Host are the domain)."""
    status, _, body = https_request(address, domain, ca, "GET", path, headers=headers, timeout=timeout)
    return status, body


def set_cookies(headers: list, jar: dict) -> None:
    """Update ``jar`` (name -> value) from Set-Cookie response headers, as a browser would."""
    for name, value in headers:
        if name.lower() == "set-cookie":
            cookie = SimpleCookie()
            cookie.load(value)
            for key, morsel in cookie.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    jar.pop(key, None)
                else:
                    jar[key] = morsel.value


@dataclass
class Stream:
    address: str
    domain: str
    ca: str
    path: str = "/healthz"
    headers: dict = field(default_factory=dict)
    rate: float = 20.0          # requests per second
    max_seconds: float = 60.0   # hard stop, whatever happens
    timeout: float = 5.0        # per request
    results: list = field(default_factory=list)  # (time, status or error name, release)
    cookies: dict | None = None  # when a dict: sent with each request and kept up to date, like a browser

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        interval = 1.0 / self.rate
        n = 0
        while not self._stop.is_set() and time.monotonic() - start < self.max_seconds:
            t = time.monotonic()
            release = None
            try:
                headers = dict(self.headers)
                if self.cookies:
                    headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
                status, response_headers, body = https_request(
                    self.address, self.domain, self.ca, "GET", self.path, headers=headers, timeout=self.timeout)
                if self.cookies is not None:
                    set_cookies(response_headers, self.cookies)
                if self.path == "/healthz" and body.startswith(b"{"):
                    release = json.loads(body).get("release")
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
            self.results.append((t - start, status, release))
            n += 1
            time.sleep(max(0.0, start + n * interval - time.monotonic()))

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.max_seconds + 10)

    def statuses(self) -> Counter:
        return Counter(status for _, status, _ in self.results)

    def failures(self) -> list:
        return [r for r in self.results if r[1] != 200]

    def releases(self) -> set:
        return {release for _, status, release in self.results if status == 200 and release}

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate(last result)`` holds for a result newer than now."""
        since = len(self.results)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate(r) for r in self.results[since:]):
                return True
            time.sleep(0.1)
        return False


# Runs on a test host: the files under the given roots that hold a secret, found by the sha256
# of every window of its length over runs of URL-safe characters. The secret never appears on a
# command line (sudo and Ansible's module log would keep it in the host's journal).
_FIND_SECRET = r"""
import hashlib, os, re, sys
digest, size, roots = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
run = re.compile(rb"[A-Za-z0-9_-]{%d,}" % size)
for root in roots:
    for top, _, names in os.walk(root):
        for name in names:
            path = os.path.join(top, name)
            try:
                if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 4_000_000:
                    continue
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if any(hashlib.sha256(m.group()[i:i + size]).hexdigest() == digest
                   for m in run.finditer(data) for i in range(len(m.group()) - size + 1)):
                print(path)
"""


def files_holding(host, secret: str, roots: list[str]) -> list[str]:
    """Files under ``roots`` on ``host`` (a testinfra host) that contain ``secret`` (URL-safe
    characters), without sending the secret to the host."""
    import hashlib
    import shlex

    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in secret), "the probe finds URL-safe secrets"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    out = host.check_output(f"python3 -c {shlex.quote(_FIND_SECRET)} {digest} {len(secret)} {' '.join(roots)}")
    return sorted(out.split())
