"""The web tier, seen from the control node: TLS against the environment's local CA, the
redirect, unknown hosts refused, security headers exactly once, static files from disk,
the app behind nginx (health, an authenticated order, another user's order)."""

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import testinfra

from drill import ca_file

REPO = Path(__file__).resolve().parents[3]
HEADERS_ONCE = [
    "strict-transport-security",
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
]


def _vars(host):
    try:
        return host.ansible.get_variables()
    except (AttributeError, RuntimeError, TypeError):
        return {}


@pytest.fixture(scope="module")
def site(host):
    v = _vars(host)
    if v and "web" not in v.get("group_names", []):
        pytest.skip("not a web host")
    env = str(v.get("stack_env", "local"))
    domain = str(v.get("site_domain", "orders.local.test"))
    address = str(v.get("stack_private_address") or v.get("ansible_host") or host.backend.get_hostname())
    if not re.match(r"^[0-9.]+$", address):
        address = host.check_output("hostname -I").split()[0]
    ca = Path(ca_file({**v, "stack_env": env}))
    assert ca.is_file(), f"the site's CA is not at {ca}"
    return {"domain": domain, "address": address, "ca": str(ca)}


def curl(site, path="/", *args, scheme="https", check=True):
    """curl from the control node, the site name resolved to the web host."""
    port = 443 if scheme == "https" else 80
    cmd = [
        "curl", "-sS", "--max-time", "10", "--cacert", site["ca"],
        "--resolve", f"{site['domain']}:{port}:{site['address']}",
        "-D", "-", *args, f"{scheme}://{site['domain']}{path}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check:
        assert done.returncode == 0, f"{shlex.join(cmd)}: {done.stderr}"
    return done


def parse(raw):
    """(status, headers as a list of (lower name, value), body) of the last response."""
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    return status, headers, body


def values(headers, name):
    return [v for k, v in headers if k == name]


def test_nginx_active_enabled_and_listening(host, site):
    nginx = host.service("nginx")
    assert nginx.is_running and nginx.is_enabled
    listening = host.check_output("ss -Hltn '( sport = :80 or sport = :443 )' | awk '{print $4}'").split()
    assert "0.0.0.0:443" in listening and "0.0.0.0:80" in listening


def test_http_redirects_to_https(site):
    status, headers, _ = parse(curl(site, "/api/orders/?page=2", scheme="http").stdout)
    assert status == 301
    assert values(headers, "location") == [f"https://{site['domain']}/api/orders/?page=2"]


def test_tls_handshake_against_local_ca_and_protocols(site):
    ok = curl(site, "/livez", "-o", "/dev/null", "-w", "%{ssl_verify_result}")
    assert ok.stdout.endswith("0")
    for version in ("--tlsv1.2", "--tlsv1.3"):
        pinned = ["--tls-max", version.removeprefix("--tlsv")] if version == "--tlsv1.2" else []
        assert curl(site, "/livez", version, *pinned, "-o", "/dev/null").returncode == 0
    old = curl(site, "/livez", "--tlsv1.1", "--tls-max", "1.1", "-o", "/dev/null", check=False)
    assert old.returncode != 0, "TLS 1.1 must be refused"


def test_tls_without_the_ca_is_not_trusted(site):
    cmd = ["curl", "-sS", "--max-time", "10", "--resolve", f"{site['domain']}:443:{site['address']}",
           f"https://{site['domain']}/livez"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 60, done.stderr  # certificate problem: the probe above really verifies


def test_unknown_host_is_rejected(site):
    plain = subprocess.run(["curl", "-sS", "--max-time", "5", "-H", "Host: evil.example", f"http://{site['address']}/"],
                           capture_output=True, text=True, check=False)
    assert plain.returncode == 52, plain.stderr  # 444: empty reply
    tls = subprocess.run(["curl", "-sS", "--max-time", "5", "-k", "--resolve", f"evil.example:443:{site['address']}",
                          "https://evil.example/"], capture_output=True, text=True, check=False)
    assert tls.returncode == 35, tls.stderr  # handshake rejected, no certificate offered


@pytest.mark.parametrize("path", ["/healthz", "/api/categories/", "/no-such-page", "STATIC"])
def test_security_headers_exactly_once(host, site, path):
    if path == "STATIC":
        path = _hashed_static(host, "admin/css/base.css")
    status, headers, _ = parse(curl(site, path, "-o", "/dev/null").stdout)
    assert status in (200, 404)
    for name in HEADERS_ONCE:
        assert len(values(headers, name)) == 1, f"{name} on {path}: {values(headers, name)}"
    assert values(headers, "x-content-type-options") == ["nosniff"]
    assert values(headers, "x-frame-options") == ["DENY"]
    assert values(headers, "strict-transport-security")[0].startswith("max-age=")
    assert "frame-ancestors 'none'" in values(headers, "content-security-policy")[0]
    assert values(headers, "server") == ["nginx"]  # server_tokens off
    assert values(headers, "cross-origin-resource-policy") == ["same-origin"]
    assert "default-src 'none'" in values(headers, "content-security-policy")[0]
    # app and database durations are the operator's business (Server-Timing is off by default)
    assert not values(headers, "server-timing"), values(headers, "server-timing")


def _hashed_static(host, name):
    manifest = json.loads(host.file("/srv/orders/current/static/staticfiles.json").content_string)
    return "/static/" + manifest["paths"][name]


def test_static_served_by_nginx_with_long_cache_and_gzip(host, site):
    path = _hashed_static(host, "admin/css/base.css")
    status, headers, _ = parse(curl(site, path, "-H", "Accept-Encoding: gzip", "-o", "/dev/null").stdout)
    assert status == 200
    assert values(headers, "cache-control") == ["public, max-age=31536000, immutable"]
    assert values(headers, "content-encoding") == ["gzip"]
    plain = parse(curl(site, "/static/admin/css/base.css", "-o", "/dev/null").stdout)
    assert plain[0] == 200 and "immutable" not in values(plain[1], "cache-control")[0]


def test_static_precompressed_at_release_served_by_gzip_static(host, site):
    """The release ships <file>.gz (gzip -9) and nginx sends that file as it is: its exact
    size and a strong ETag (compressing on the fly sends a weak one and its own bytes)."""
    path = _hashed_static(host, "admin/css/base.css")
    gz = host.file(f"/srv/orders/current{path}.gz")
    assert gz.is_file and 0 < gz.size < host.file(f"/srv/orders/current{path}").size
    status, headers, _ = parse(curl(site, path, "-H", "Accept-Encoding: gzip", "-o", "/dev/null").stdout)
    assert status == 200 and values(headers, "content-encoding") == ["gzip"]
    assert values(headers, "content-length") == [str(gz.size)]
    assert not values(headers, "etag")[0].startswith("W/")


def test_healthz_through_nginx(site):
    status, _, body = parse(curl(site, "/healthz").stdout)
    assert status == 200
    answer = json.loads(body)
    assert answer["status"] == "ok" and answer["checks"] == {"database": "ok", "redis": "ok"}
    assert re.match(r"^[0-9a-f]{12}$", answer["release"])


def _token(host, user):
    out = host.check_output(f"orders-manage create_api_token {user} --name testinfra")
    return out.strip().splitlines()[-1]


def _in_stock_product(host):
    return int(host.check_output(
        "orders-manage shell -c \"from apps.catalog.models import Product; "
        "print(Product.objects.filter(stock__gt=0, is_active=True).order_by('id').values_list('id', flat=True).first())\""
    ).strip().splitlines()[-1])


def create_order(site, token: str, product: int) -> int:
    """POST one order of one item through nginx; return its id."""
    body = json.dumps({"items": [{"product_id": product, "quantity": 1}]})
    status, _, created = parse(curl(site, "/api/orders/", "-H", f"Authorization: Bearer {token}",
                                    "-H", "Content-Type: application/json", "--data", body).stdout)
    assert status == 201, created
    return json.loads(created)["id"]


def _app_host(host):
    """The host that runs the app (and its management wrapper): this one, or the first app host."""
    v = _vars(host)
    if not v or "app" in v.get("group_names", []):
        return host
    inventory = getattr(host.backend, "ansible_inventory", None)
    # as this host's backend: through sudo when the tests log in as a user (the scenarios)
    return testinfra.get_host(f"ansible://{v['groups']['app'][0]}?ansible_inventory={inventory}",
                              sudo=getattr(host.backend, "sudo", False))


def test_order_created_and_read_back_and_hidden_from_others(host, site):
    app = _app_host(host)
    owner, other = _token(app, "demo0001"), _token(app, "demo0002")
    order_id = create_order(site, owner, _in_stock_product(app))
    status, _, read = parse(curl(site, f"/api/orders/{order_id}/", "-H", f"Authorization: Bearer {owner}").stdout)
    assert status == 200 and json.loads(read)["id"] == order_id
    status, _, _ = parse(curl(site, f"/api/orders/{order_id}/", "-H", f"Authorization: Bearer {other}").stdout)
    assert status == 404
    status, _, _ = parse(curl(site, f"/api/orders/{order_id}/").stdout)
    assert status == 401


def test_admin_login_page_served(site):
    status, headers, _ = parse(curl(site, "/admin/login/", "-o", "/dev/null").stdout)
    assert status == 200
    assert len(values(headers, "x-frame-options")) == 1


def test_site_key_is_private(host, site):
    key = host.file(f"/etc/ssl/{site['domain']}/privkey.pem")
    assert key.is_file
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    if _vars(host).get("nginx_tls_mode", "local_ca") == "local_ca":  # a server certificate, for serving only
        usage = host.check_output(f"openssl x509 -in /etc/ssl/{site['domain']}/fullchain.pem -noout -ext extendedKeyUsage")
        assert "TLS Web Server Authentication" in usage, usage
    ca_key = REPO / ".state" / str(_vars(host).get("stack_env", "local")) / "ca" / "ca.key"
    assert oct(ca_key.stat().st_mode & 0o777) == "0o600"
    assert host.run("ls /etc/ssl/*/ca.key /root/ca.key 2>/dev/null").stdout == "", "the CA key never leaves the control node"


def _json_error(raw) -> tuple[int, list, dict]:
    status, headers, body = parse(raw)
    assert values(headers, "content-type") == ["application/json"], (status, body[:300])
    error = json.loads(body)["error"]
    assert set(error) >= {"code", "message"}, error
    return status, headers, error


LONG = "a" * 5000


@pytest.mark.parametrize(("what", "args", "path", "expected"), [
    # nginx refuses these itself (they never reach Gunicorn, whose answer would be an HTML page)
    ("NUL in the path", [], "/api/%00", (400, "bad_request")),
    ("request line over 4k", ["--http1.1"], f"/api/orders/?q={LONG}", (414, "uri_too_long")),
    ("header over 4k", ["--http1.1", "-H", f"X-Long: {LONG}"], "/api/orders/", (431, "headers_too_large")),
    ("body over client_max_body_size", ["-H", "Content-Type: application/json", "--data-binary", "@-"],
     "/api/orders/", (413, "body_too_large")),
])
def test_nginx_refusals_are_json_errors(site, what, args, path, expected):
    if "@-" in args:  # 11 MiB, streamed from stdin: past nginx's 10m before any app code runs
        cmd = ["curl", "-sS", "--max-time", "20", "--cacert", site["ca"], "--resolve",
               f"{site['domain']}:443:{site['address']}", "-D", "-", *args, f"https://{site['domain']}{path}"]
        raw = subprocess.run(cmd, input=b"x" * (11 * 1024 * 1024), capture_output=True, check=False).stdout.decode()
    else:
        raw = curl(site, path, *args).stdout
    got, headers, error = _json_error(raw)
    assert (got, error["code"]) == expected, (what, got, error)
    for name in HEADERS_ONCE:
        assert len(values(headers, name)) == 1, f"{name} on nginx's {got}: {values(headers, name)}"
    assert values(headers, "cache-control") == ["no-store"]
