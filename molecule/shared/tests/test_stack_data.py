"""The data tier: PostgreSQL behind PgBouncer, Redis. Behaviour seen from the host.

Secrets are read from the files the roles wrote on the host (root-only or group-only), so the
tests need no copy of the vault.
"""

import re

import pytest

from conftest import groups_of, need


def _userlist(host):
    text = host.file("/etc/pgbouncer/userlist.txt").content_string
    return dict(re.findall(r'^"([^"]+)" "([^"]*)"$', text, re.M))


def _redis_password(host):
    text = host.file("/etc/redis/redis.conf").content_string
    return re.search(r"^requirepass (\S+)$", text, re.M).group(1)


@pytest.mark.parametrize("unit", ["postgresql@*-main.service", "pgbouncer.service"])
def test_db_units_active_and_enabled(host, unit):
    need(host, "db")
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
    need(host, "db")
    listening = host.check_output("ss -Hltn 'sport = :6432' | awk '{print $4}'").split()
    assert "127.0.0.1:6432" in listening
    assert "0.0.0.0:6432" not in listening and "*:6432" not in listening


def test_redis_bind(host):
    need(host, "cache")
    listening = host.check_output("ss -Hltn 'sport = :6379' | awk '{print $4}'").split()
    assert "127.0.0.1:6379" in listening
    assert "0.0.0.0:6379" not in listening and "*:6379" not in listening


def test_psql_through_pgbouncer_and_role_is_not_superuser(host):
    need(host, "db")
    user, password = next((u, p) for u, p in _userlist(host).items() if u != "postgres")
    out = host.check_output(
        f"PGPASSWORD='{password}' psql -X -h 127.0.0.1 -p 6432 -U {user} -d {user} -Atc "
        "\"select current_user, rolsuper, rolcreatedb, rolcreaterole from pg_roles where rolname = current_user\""
    )
    assert out == f"{user}|f|f|f"


def test_pgbouncer_refuses_a_wrong_password(host):
    need(host, "db")
    user = next(u for u in _userlist(host) if u != "postgres")
    cmd = host.run(f"PGPASSWORD=wrong psql -X -h 127.0.0.1 -p 6432 -U {user} -d {user} -Atc 'select 1'")
    assert cmd.rc != 0
    assert "password authentication failed" in cmd.stderr or "SASL authentication failed" in cmd.stderr


def test_pgbouncer_pool_mode_is_transaction(host):
    need(host, "db")
    out = host.check_output(
        "runuser -u postgres -- psql -X -h /var/run/postgresql -p 6432 -d pgbouncer -Atc 'SHOW CONFIG'"
        " | grep -E '^(pool_mode|auth_type)\\|'"
    )
    assert "pool_mode|transaction" in out
    assert "auth_type|hba" in out


def test_pgbouncer_admin_console_only_for_postgres_by_peer(host):
    need(host, "db")
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
    anonymous = host.run("redis-cli -h 127.0.0.1 ping")
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    authed = host.run(f"REDISCLI_AUTH='{_redis_password(host)}' redis-cli -h 127.0.0.1 ping")
    assert authed.stdout.strip() == "PONG"


def test_redis_memory_policy(host):
    need(host, "cache")
    pw = _redis_password(host)
    policy = host.check_output(f"REDISCLI_AUTH='{pw}' redis-cli config get maxmemory-policy").split()
    assert policy[-1] == "allkeys-lru"
    maxmemory = int(host.check_output(f"REDISCLI_AUTH='{pw}' redis-cli config get maxmemory").split()[-1])
    assert maxmemory > 0
    assert host.check_output(f"REDISCLI_AUTH='{pw}' redis-cli config get protected-mode").split()[-1] == "yes"


@pytest.mark.parametrize(
    ("path", "owner", "group", "mode"),
    [
        ("/etc/pgbouncer/userlist.txt", "postgres", "postgres", 0o640),
        ("/etc/redis/redis.conf", "redis", "redis", 0o640),
    ],
)
def test_secret_files_modes(host, path, owner, group, mode):
    needed = "cache" if "redis" in path else "db"
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
    need(host, "db")
    if not {"app", "db"} <= groups_of(host):
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
    assert int(_show(host, "max_connections")) > int(config["max_db_connections"])
