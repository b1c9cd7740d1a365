"""Traffic between tiers is encrypted and verified on split topologies: an app host reaches
PgBouncer and PostgreSQL only over TLS (sslmode=verify-full against the environment's CA) and
Redis only over TLS (rediss://); a plain-text connection from the app host is refused, and a
client that trusts another CA fails. Runs on app hosts whose db and cache hosts are others.

In a Patroni cluster (three or more db hosts) the app reaches PgBouncer on its own host over
loopback; PgBouncer and the management commands reach the leader through HAProxy on loopback,
with sslmode=verify-ca (the name dialled is never the certificate's; docs/decisions.md §14)."""

import json

import pytest

from conftest import groups_of, in_a_cluster, inventory_groups, other_host

PROBE = r'''
import json, os, urllib.parse as up
import psycopg, redis
db = up.urlsplit(os.environ["DATABASE_URL"]); direct = up.urlsplit(os.environ["DATABASE_DIRECT_URL"])
rd = up.urlsplit(os.environ["REDIS_URL"]); ca = dict(up.parse_qsl(direct.query))["sslrootcert"]
out = {}
def pg(name, url, **kw):
    try:
        with psycopg.connect(host=url.hostname, port=url.port, dbname=url.path[1:], user=url.username,
                             password=up.unquote(url.password), connect_timeout=5, **kw) as c:
            out[name] = ["ok", c.pgconn.ssl_in_use, c.execute("select 1").fetchone()[0]]
    except Exception as e:
        out[name] = ["refused", type(e).__name__, str(e)[:300]]
def rs(name, **kw):
    try:
        r = redis.Redis(host=rd.hostname, port=rd.port, password=up.unquote(rd.password), socket_timeout=5,
                        socket_connect_timeout=5, **kw)
        out[name] = ["ok", r.ping()]
    except Exception as e:
        out[name] = ["refused", type(e).__name__, str(e)[:300]]
MODES = {"pgbouncer": "MODE_POOLER", "postgresql": "MODE_DIRECT"}
for name, url in (("pgbouncer", db), ("postgresql", direct)):
    pg(name + "_verified", url, sslmode=MODES[name], sslrootcert=ca)
    pg(name + "_plain", url, sslmode="disable")
    pg(name + "_other_ca", url, sslmode="verify-full", sslrootcert="/etc/ssl/certs/ca-certificates.crt")
rs("redis_verified", ssl=True, ssl_ca_certs=ca, ssl_cert_reqs="required", ssl_check_hostname=True)
rs("redis_plain")
rs("redis_other_ca", ssl=True, ssl_ca_certs="/etc/ssl/certs/ca-certificates.crt", ssl_cert_reqs="required")
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def probe(host):
    groups = inventory_groups(host)
    me = host.ansible.get_variables()["inventory_hostname"]
    if "app" not in groups_of(host) or me in groups.get("db", []) or me in groups.get("cache", []):
        pytest.skip("not an app host with remote db and cache tiers")
    modes = ("verify-full", "verify-ca") if in_a_cluster(host) else ("verify-full", "verify-full")
    probe = PROBE.replace("MODE_POOLER", modes[0]).replace("MODE_DIRECT", modes[1])
    run = host.run("set -a; . /srv/orders/current/env; set +a; "
                   "/srv/orders/current/venv/bin/python - <<'EOF'\n" + probe + "\nEOF")
    assert run.rc == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_app_is_configured_for_verified_tls(host, probe):
    env = host.check_output("cat /srv/orders/current/env")
    if in_a_cluster(host):
        assert "DATABASE_URL='postgres://" in env and "@127.0.0.1:6432/" in env, "PgBouncer on this host"
        assert env.count("sslmode=verify-ca") == 1, "DATABASE_DIRECT_URL verifies the leader's certificate"
        ini = host.check_output("cat /etc/pgbouncer/pgbouncer.ini")
        assert "server_tls_sslmode = verify-ca" in ini, "PgBouncer verifies the leader's certificate"
    else:
        assert env.count("sslmode=verify-full") == 2, "DATABASE_URL and DATABASE_DIRECT_URL verify the server"
    assert "REDIS_URL='rediss://" in env and "ssl_cert_reqs=required" in env


def test_pgbouncer_reaches_the_leader_only_over_tls(host, probe):
    """In a Patroni cluster: every connection from this app host on the leader is encrypted."""
    if not in_a_cluster(host):
        pytest.skip("one db host: PgBouncer runs there (the app's connections above)")
    me = host.ansible.get_variables()
    address = str(me.get("stack_private_address") or me["ansible_host"])
    rows = ""
    for name in inventory_groups(host)["db"]:
        rows = other_host(name).check_output(
            "runuser -u postgres -- psql -X -Atc \"select s.ssl, count(*) from pg_stat_ssl s join pg_stat_activity a "
            f"using (pid) where a.client_addr = '{address}' and not pg_is_in_recovery() group by s.ssl\"")
        if rows:
            break
    assert rows.splitlines() == [rows.splitlines()[0]] and rows.startswith("t|"), rows or "no connection from here"


@pytest.mark.parametrize("tier", ["pgbouncer", "postgresql"])
def test_database_tiers_only_over_verified_tls(host, probe, tier):
    if in_a_cluster(host) and tier == "pgbouncer":
        pytest.skip("PgBouncer runs on this app host: loopback (its way to the leader: the test above)")
    assert probe[f"{tier}_verified"] == ["ok", True, 1], probe[f"{tier}_verified"]
    # the same login, password and host as the verified connection: only TLS is missing.
    # PostgreSQL names the pg_hba entry it lacks; PgBouncer says no more than "login rejected".
    plain = probe[f"{tier}_plain"]
    reason = "no pg_hba.conf entry" if tier == "postgresql" else "login rejected"
    assert plain[0] == "refused" and reason in plain[2], plain
    other = probe[f"{tier}_other_ca"]
    assert other[0] == "refused" and "certificate verify failed" in other[2], other


def test_redis_only_over_verified_tls(probe):
    assert probe["redis_verified"] == ["ok", True], probe["redis_verified"]
    assert probe["redis_plain"][0] == "refused", probe["redis_plain"]
    other = probe["redis_other_ca"]
    assert other[0] == "refused" and "certificate verify failed" in other[2], other


@pytest.mark.parametrize(("group", "name", "owner"), [("db", "db", "postgres"), ("cache", "redis", "redis")])
def test_tier_certificates_from_the_environments_ca(host, group, name, owner):
    """On a db or cache host with clients elsewhere: the key is its daemon's alone, the certificate
    names the service address, lives at most 366 days and chains to the environment's CA."""
    if group not in groups_of(host) or "app" in groups_of(host):
        pytest.skip(f"not a {group} host with remote clients")
    v = host.ansible.get_variables()
    address = str(v.get("stack_private_address") or v["ansible_host"])
    key, cert = host.file(f"/etc/ssl/stack/{name}.key"), f"/etc/ssl/stack/{name}.crt"
    assert (key.user, key.group, key.mode) == (owner, owner, 0o600)
    assert f"IP Address:{address}" in host.check_output(f"openssl x509 -in {cert} -noout -ext subjectAltName")
    assert "TLS Web Server Authentication" in host.check_output(f"openssl x509 -in {cert} -noout -ext extendedKeyUsage")
    assert host.run(f"openssl verify -CAfile /etc/ssl/stack/ca.crt {cert}").rc == 0
    days = host.check_output(f"echo $(( ($(date -d \"$(openssl x509 -in {cert} -noout -enddate | cut -d= -f2)\" +%s)"
                             f" - $(date -d \"$(openssl x509 -in {cert} -noout -startdate | cut -d= -f2)\" +%s)) / 86400 ))")
    assert int(days) <= 366
    leaked = host.run("ls /etc/ssl/stack/ca.key /etc/ssl/stack/ca/ 2>/dev/null").stdout
    assert leaked == "", "the CA key stays on the control node"
