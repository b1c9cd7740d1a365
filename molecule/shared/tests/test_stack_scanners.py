"""The site as outside scanners grade it, run from the control node against the web host:
sslyze checks the TLS configuration against Mozilla's "intermediate" profile (protocols,
ciphers, curves, certificate lifetime), and the MDN HTTP Observatory grades the HTTP headers,
redirects and cookies (A+, 120 or more). Both are pinned and installed by `make scan-tools`;
both trust only the environment's local CA."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_stack_web import REPO, site  # noqa: F401 - the fixture

STATE = REPO / ".state"
HERE = Path(__file__).resolve().parent


def test_tls_is_mozilla_intermediate_compliant(site):  # noqa: F811
    run = subprocess.run(
        [str(STATE / "venv-scan/bin/sslyze"), "--mozilla_config=intermediate", "--certinfo_ca_file", site["ca"],
         f"{site['domain']}:443{{{site['address']}}}"],
        capture_output=True, text=True, timeout=180, check=False,
    )
    out = run.stdout + run.stderr
    assert f"{site['domain']}:443: OK - Compliant." in out, out[-3000:]
    assert run.returncode == 0, out[-3000:]
    # the certificate chain validates against the environment's CA (not just "a certificate")
    assert "OK - Certificate is trusted" in out, out[-3000:]


def test_http_observatory_grades_a_plus_and_at_least_120(site):  # noqa: F811
    env = {
        **os.environ,
        "NODE_EXTRA_CA_CERTS": site["ca"],
        "NODE_OPTIONS": f"--require {HERE / 'resolve_hook.cjs'}",
        "STACK_RESOLVE": f"{site['domain']}={site['address']}",
    }
    # src/scan.js, the scanner itself: its bin/ wrapper only replaces NODE_EXTRA_CA_CERTS with
    # the public CAs' bundle, which would not trust the environment's CA
    scanner = STATE / "observatory/node_modules/@mdn/mdn-http-observatory/src/scan.js"
    run = subprocess.run([str(STATE / "node-bin"), str(scanner), site["domain"]],
                         capture_output=True, text=True, timeout=180, env=env, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(run.stdout)
    failed = {name: t.get("result") for name, t in report["tests"].items() if not t.get("pass")}
    assert report["scan"]["grade"] == "A+", (report["scan"], failed)
    assert report["scan"]["score"] >= 120, (report["scan"], failed)
    assert failed == {}, failed


@pytest.fixture(autouse=True)
def _scanners_installed():
    missing = [p for p in ("venv-scan/bin/sslyze", "node-bin", "observatory/.stamp") if not (STATE / p).exists()]
    assert not missing, f"run `make scan-tools` first (missing: {missing})"
