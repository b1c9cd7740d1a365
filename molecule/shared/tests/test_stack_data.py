"""The data tier: PostgreSQL behind PgBouncer, Redis. Behaviour seen from the host.

Secrets are read from the files the roles wrote on the hosts (root-only or group-only): Redis's
auth.conf, and the app's env file on the (first) app host for the database login, since the
db host keeps no password (PgBouncer's user list holds SCRAM verifiers). The tests need no copy
of the vault.
"""

import re
from urllib.parse import urlsplit

import pytest

from conftest import direct_port, groups_of, in_a_cluster, inventory_groups, need, other_host, pooler_group


def _userlist(host):
    text = host.file("/etc/pgbouncer/userlist.txt").content_string
    return dict(re.findall(r'^"([^"]+)" "([^"]*)"$', text, re.M))


def app_env(host) -> dict:
    """The live release's env file on this host, or on the first app host."""
    app = host if "app" in groups_of(host) else other_host(inventory_groups(host)["app"][0])
    text = app.check_output("cat /srv/orders/current/env")
    return dict(re.findall(r"^([A-Z_]+)='(.*)'$", text, re.M))


def db_login(host) -> tuple[str, str]:
    """(login role, password) the app uses."""
    url = urlsplit(app_env(host)["DATABASE_URL"])
    return url.username, url.password


def redis_passwords(host) -> list[str]:
    text = host.file("/etc/redis/auth.conf").content_string
    line = re.search(r"^user default .*$", text, re.M).group(0)
    return re.findall(r">(\S+)", line)


# the role's and operators' way in: the socket (on a split topology the TCP port speaks TLS only)
REDIS_CLI = "redis-cli -s /run/redis/redis-server.sock"


def _redis_password(host):
    return redis_passwords(host)[0]


@pytest.mark.parametrize("unit", ["postgresql@*-main.service", "pgbouncer.service"])
def test_db_units_active_and_enabled(host, unit):
    if in_a_cluster(host):  # Patroni runs the postmaster; PgBouncer runs on each app host
        unit = {"postgresql@*-main.service": "patroni.service"}.get(unit, unit)
    need(host, pooler_group(host) if unit == "pgbouncer.service" else "db")
    name = host.check_output(f"systemctl list-units --plain --no-legend '{unit}' | awk '{{print $1}}'")
    assert name, f"no unit matches {unit}"
    assert host.service(name).is_running
    assert host.service(name).is_enabled


def test_redis_active_and_enabled(host):
    need(host, "cache")
    assert host.service("redis-server").is_running
    assert host.service("redis-server").is_enabled


def test_postgresql_listens_on_loopback_only_when_all_in_one(host):
    need(host, "db")
    listening = host.check_output("ss -Hltn 'sport = :5432' | awk '{print $4}'").split()
    assert listening, "PostgreSQL does not listen on 5432"
    if groups_of(host) >= {"app", "db"}:
        assert set(listening) <= {"127.0.0.1:5432", "[::1]:5432"}, listening


def test_pgbouncer_and_redis_listen_on_loopback(host):
    need(host, pooler_group(host))
    listening = host.check_output("ss -Hltn 'sport = :6432' | awk '{print $4}'").split()
    assert "127.0.0.1:6432" in listening
    assert "0.0.0.0:6432" not in listening and "*:6432" not in listening


def test_redis_bind(host):
    need(host, "cache")
    listening = host.check_output("ss -Hltn 'sport = :6379' | awk '{print $4}'").split()
    assert "127.0.0.1:6379" in listening
    assert "0.0.0.0:6379" not in listening and "*:6379" not in listening


ROLE_CHECK = (
    "\"select session_user, current_user, bool_or(rolsuper), bool_or(rolcreatedb), bool_or(rolcreaterole)"
    " from pg_roles where rolname in (session_user, current_user)\""
)


@pytest.mark.parametrize("port", [6432, 5432])
def test_psql_through_pgbouncer_and_direct_and_roles_are_not_superuser(host, port):
    """The app logs in as its login role (orders_r<N>); its sessions act as the owner role."""
    need(host, pooler_group(host))
    port = port if port == 6432 else direct_port(host)
    user, password = db_login(host)
    assert re.fullmatch(r"orders_r\d+", user), user
    out = host.check_output(
        f"PGPASSWORD='{password}' psql -X -h 127.0.0.1 -p {port} -U {user} -d orders -Atc {ROLE_CHECK}"
    )
    assert out == f"{user}|orders|f|f|f"


@pytest.mark.parametrize("port", [6432, 5432])
def test_tables_the_app_creates_belong_to_the_owner_role(host, port):
    """What migrate creates (direct) or a request would (through PgBouncer, transaction pooling)
    is owned by orders, whichever login role made it: a later login role can use it."""
    need(host, pooler_group(host))
    port = port if port == 6432 else direct_port(host)
    user, password = db_login(host)
    out = host.check_output(
        f"PGPASSWORD='{password}' psql -X -q -h 127.0.0.1 -p {port} -U {user} -d orders -At"
        " -c 'create table probe_owner (id int); select tableowner from pg_tables where tablename = $$probe_owner$$;"
        " drop table probe_owner'"
    )
    assert out == "orders"


def test_owner_role_does_not_log_in(host):
    need(host, "db")
    out = host.check_output(
        "runuser -u postgres -- psql -X -Atc \"select rolcanlogin, rolpassword is null from pg_authid where rolname = 'orders'\""
    )
    assert out == "f|t"
    _, password = db_login(host)
    cmd = host.run(f"PGPASSWORD='{password}' psql -X -h 127.0.0.1 -p 5432 -U orders -d orders -Atc 'select 1'")
    assert cmd.rc != 0 and "password authentication failed" in cmd.stderr


def test_pgbouncer_keeps_no_password_only_scram_verifiers(host):
    need(host, pooler_group(host))
    users = {u: p for u, p in _userlist(host).items() if u != "postgres"}
    assert list(users) == [db_login(host)[0]]  # only the current login role
    assert all(p.startswith("SCRAM-SHA-256$4096:") for p in users.values()), "plain-text password in userlist.txt"
    _, password = db_login(host)
    assert password not in host.file("/etc/pgbouncer/userlist.txt").content_string


def test_pgbouncer_refuses_a_wrong_password(host):
    need(host, pooler_group(host))
    user = db_login(host)[0]
    cmd = host.run(f"PGPASSWORD=wrong psql -X -h 127.0.0.1 -p 6432 -U {user} -d orders -Atc 'select 1'")
    assert cmd.rc != 0
    assert "password authentication failed" in cmd.stderr or "SASL authentication failed" in cmd.stderr


def test_pgbouncer_pool_mode_is_transaction(host):
    need(host, pooler_group(host))
    out = host.check_output(
        "runuser -u postgres -- psql -X -h /var/run/postgresql -p 6432 -d pgbouncer -Atc 'SHOW CONFIG'"
        " | grep -E '^(pool_mode|auth_type)\\|'"
    )
    assert "pool_mode|transaction" in out
    assert "auth_type|hba" in out


def test_pgbouncer_admin_console_only_for_postgres_by_peer(host):
    need(host, pooler_group(host))
    other = host.run("runuser -u nobody -- psql -X -h /var/run/postgresql -p 6432 -U postgres -d pgbouncer -Atc 'SHOW VERSION'")
    assert other.rc != 0 and "unix socket login rejected" in other.stderr
    tcp = host.run("PGPASSWORD=x psql -X -h 127.0.0.1 -p 6432 -U postgres -d pgbouncer -Atc 'SHOW VERSION'")
    assert tcp.rc != 0


def test_postgresql_hba_has_no_trust_and_uses_scram(host):
    need(host, "db")
    rules = host.check_output(
        "runuser -u postgres -- psql -X -Atc \"select type, auth_method from pg_hba_file_rules where error is null\""
    ).splitlines()
    methods = {line.split("|")[1] for line in rules}
    assert "trust" not in methods and "md5" not in methods and "password" not in methods
    assert "scram-sha-256" in methods
    assert host.check_output("runuser -u postgres -- psql -X -Atc 'show password_encryption'") == "scram-sha-256"


def test_redis_refuses_without_password_and_answers_with_it(host):
    need(host, "cache")
    anonymous = host.run(f"{REDIS_CLI} ping")
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    authed = host.run(f"REDISCLI_AUTH='{_redis_password(host)}' {REDIS_CLI} ping")
    assert authed.stdout.strip() == "PONG"


def test_redis_accepts_only_the_apps_password_and_its_config_holds_none(host):
    """auth.conf holds the password (one, outside a rotation); redis.conf only includes it."""
    need(host, "cache")
    assert redis_passwords(host) == [urlsplit(app_env(host)["REDIS_URL"]).password]
    conf = host.file("/etc/redis/redis.conf").content_string
    assert "include /etc/redis/auth.conf" in conf
    assert "requirepass" not in conf and ">" not in conf


def test_redis_memory_policy(host):
    need(host, "cache")
    pw = _redis_password(host)
    policy = host.check_output(f"REDISCLI_AUTH='{pw}' {REDIS_CLI} config get maxmemory-policy").split()
    assert policy[-1] == "allkeys-lru"
    maxmemory = int(host.check_output(f"REDISCLI_AUTH='{pw}' {REDIS_CLI} config get maxmemory").split()[-1])
    assert maxmemory > 0
    assert host.check_output(f"REDISCLI_AUTH='{pw}' {REDIS_CLI} config get protected-mode").split()[-1] == "yes"


@pytest.mark.parametrize(
    ("path", "owner", "group", "mode"),
    [
        ("/etc/pgbouncer/userlist.txt", "postgres", "postgres", 0o640),
        ("/etc/redis/redis.conf", "redis", "redis", 0o640),
        ("/etc/redis/auth.conf", "redis", "redis", 0o640),
    ],
)
def test_secret_files_modes(host, path, owner, group, mode):
    needed = "cache" if "redis" in path else pooler_group(host)
    need(host, needed)
    f = host.file(path)
    assert f.is_file
    assert (f.user, f.group, f.mode) == (owner, group, mode)


def _show(host, setting):
    return host.check_output(f"runuser -u postgres -- psql -X -Atc 'show {setting}'")


def test_postgresql_memory_follows_stack_memory_mb(host):
    need(host, "db")
    try:
        v = host.ansible.get_variables()
    except (AttributeError, RuntimeError, TypeError):
        v = {}
    if "stack_memory_mb" not in v:
        pytest.skip("stack_memory_mb unknown without an inventory")
    # testinfra lists the implicit group "all" among group_names; the role does not see it
    share = 1.0 if set(v.get("group_names", [])) - {"all", "ungrouped"} == {"db"} else 0.25
    budget = int(int(v["stack_memory_mb"]) * share)
    assert _show(host, "shared_buffers") == f"{max(int(budget * 0.25), 32)}MB"
    assert _show(host, "effective_cache_size") == f"{max(int(budget * 0.75), 64)}MB"


def test_pgbouncer_pool_fits_the_workers_of_this_host(host):
    need(host, pooler_group(host))
    if not {"app", pooler_group(host)} <= groups_of(host):
        pytest.skip("workers of remote app hosts are checked on the multinode scenario")
    exec_start = host.check_output("systemctl show -P ExecStart orders-gunicorn.service")
    workers = int(re.search(r"--workers (\d+)", exec_start).group(1))
    config = dict(
        line.split("|")[:2]
        for line in host.check_output(
            "runuser -u postgres -- psql -X -h /var/run/postgresql -p 6432 -d pgbouncer -Atc 'SHOW CONFIG'"
        ).splitlines()
    )
    assert int(config["default_pool_size"]) >= workers
    assert int(config["max_client_conn"]) >= 2 * workers
    assert int(config["server_login_retry"]) <= 2
    if in_a_cluster(host):  # every app host's PgBouncer fits in the leader's max_connections together
        apps = inventory_groups(host)["app"]
        assert int(_show(other_host(inventory_groups(host)["db"][0]), "max_connections")) > \
            len(apps) * int(config["max_db_connections"])
    else:
        assert int(_show(host, "max_connections")) > int(config["max_db_connections"])
