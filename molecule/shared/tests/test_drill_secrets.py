"""Secret rotation under load (issue 6), on the all-in-one scenario.

Every secret changes in one `make deploy` (the real ansible/site.yml, the new values given as
extra vars as the vault would give them) while streams of requests that use them run: zero
failed requests, each new secret works, and once the run is over each old one is refused. The
test ends by deploying the scenario's own secrets again, which is one more rotation. (One
deploy for all of them, as an operator rotating everything would run it, and three deploys in
all instead of seven: the time budget.)

No run prints a secret: every deploy here (`make deploy`, and with -v) and `make check`'s
--check --diff are searched for each secret, old and new, and for the vault's own values.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from urllib.parse import urlencode, urlsplit

from test_stack_async import wait_for_mails
from test_stack_web import _in_stock_product, _token

from drill import Stream, deploy, https_request, scenario_inventory, set_cookies, vault_password_file

ADMIN_USER, ADMIN_PASSWORD = "drill-secrets", "drill-secrets-password-0123456789"


def new_secret(n: int = 32) -> str:
    """A password as the vault example says to make one (URL-safe: it goes into URLs)."""
    return secrets.token_urlsafe(n)


def extra(**values) -> list[str]:
    return ["-e", json.dumps(values)]


def live_env(host) -> dict:
    text = host.check_output("cat /srv/orders/current/env")
    return dict(re.findall(r"^([A-Z_]+)='(.*)'$", text, re.M))


def db_login(host) -> tuple[str, str]:
    url = urlsplit(live_env(host)["DATABASE_URL"])
    return url.username, url.password


def psql(host, user: str, password: str, port: int):
    return host.run(f"PGPASSWORD='{password}' psql -X -h 127.0.0.1 -p {port} -U {user} -d orders "
                    "-Atc 'select session_user, current_user'")


def redis_ping(host, password: str) -> str:
    cmd = host.run(f"REDISCLI_AUTH='{password}' redis-cli -h 127.0.0.1 --no-auth-warning ping")
    return (cmd.stdout + cmd.stderr).strip()


def queue_ping(host, password: str) -> str:
    cmd = host.run(f"REDISCLI_AUTH='{password}' redis-cli --user orders -p 6380 -h 127.0.0.1 --no-auth-warning ping")
    return (cmd.stdout + cmd.stderr).strip()


def create_order(host, address, domain, ca) -> int:
    auth = {"Authorization": f"Bearer {_token(host, 'demo0003')}", "Content-Type": "application/json"}
    body = json.dumps({"items": [{"product_id": _in_stock_product(host), "quantity": 1}]}).encode()
    status, _, created = https_request(address, domain, ca, "POST", "/api/orders/", headers=auth, body=body)
    assert status == 201, created
    return json.loads(created)["id"]


def vault_values() -> dict:
    """The scenario's vault's own secrets (the file is encrypted as a whole, as an operator's is)."""
    import yaml
    from ansible.parsing.vault import VaultLib, VaultSecret

    inventory = scenario_inventory()
    vault = VaultLib([("default", VaultSecret(vault_password_file(inventory).read_bytes().strip()))])
    data = yaml.safe_load(vault.decrypt((inventory / "group_vars" / "all" / "vault.yml").read_bytes()))
    return {k: v for k, v in data.items() if k.startswith("vault_")}


def plain(run) -> str:
    """The run's stdout and stderr without colour codes (drill.deploy asks for none anyway)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)


def assert_no_secret(run, values: dict) -> None:
    """None of ``values`` (name -> secret), nor any of the vault's, is in the run's stdout or stderr."""
    values = {**vault_values(), **values}
    output = plain(run)

    def masked(line: str) -> str:  # the report names secrets, never shows them
        for name, value in values.items():
            line = line.replace(value, f"<{name}>")
        return line[:200]

    leaked = {name: [masked(line) for line in output.splitlines() if value in line]
              for name, value in values.items() if value and value in output}
    assert not leaked, f"secrets in Ansible's output: {leaked}"


def demo_orders(host) -> tuple[dict, str]:
    """(auth header of demo0003, its order list): the list reads the token (Redis, then
    PostgreSQL) and, on every request, the orders (PostgreSQL through PgBouncer). (Not the order
    detail: a warm one is answered from Redis alone.)"""
    return {"Authorization": f"Bearer {_token(host, 'demo0003')}"}, "/api/orders/?page_size=5"


def streams(address, domain, ca, host):
    auth, orders = demo_orders(host)
    return (Stream(address, domain, ca, rate=10, max_seconds=700, timeout=10),
            Stream(address, domain, ca, path=orders, headers=auth, rate=5, max_seconds=700, timeout=10))


def check(run) -> None:
    """The run succeeded (on failure, its output's end; never the command line, which holds secrets)."""
    ok = run.returncode == 0
    assert ok, run.stdout[-3000:] + run.stderr[-2000:]


def admin_login(address, domain, ca, host) -> dict:
    """A staff session through nginx, as a browser gets it: the cookie jar."""
    host.run(f"DJANGO_SUPERUSER_PASSWORD={ADMIN_PASSWORD} orders-manage createsuperuser --noinput "
             f"--username {ADMIN_USER} --email drill-secrets@example.com")  # fails harmlessly when it exists
    jar: dict = {}
    status, headers, page = https_request(address, domain, ca, "GET", "/admin/login/")
    assert status == 200
    set_cookies(headers, jar)
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    body = urlencode({"csrfmiddlewaretoken": csrf, "username": ADMIN_USER, "password": ADMIN_PASSWORD,
                      "next": "/admin/"}).encode()
    status, headers, _ = https_request(
        address, domain, ca, "POST", "/admin/login/",
        headers={"Cookie": f"csrftoken={jar['csrftoken']}", "Referer": f"https://{domain}/admin/login/",
                 "Content-Type": "application/x-www-form-urlencoded"}, body=body)
    assert status == 302, "admin login failed"
    set_cookies(headers, jar)
    assert "sessionid" in jar
    return jar


def admin_status(address, domain, ca, jar: dict) -> int:
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
    return https_request(address, domain, ca, "GET", "/admin/", headers={"Cookie": cookie})[0]


def test_every_secret_rotated_in_one_deploy_has_no_window(all_in_one):
    """New vault_db_password, vault_redis_password, vault_redis_queue_password and
    vault_django_secret_key (the old key as django_app_secret_key_previous), all in one
    `make deploy ARGS=-v`, while streams use them (/healthz; the order list with a token: Redis,
    then PostgreSQL through PgBouncer; an admin session): no failed request. Then each new
    secret works and each old one is refused:
    - database: a new login role; the old one refused through PgBouncer and directly, and dropped;
    - Redis, both instances: the passwords applied live (ACL SETUSER, no restart: the cache and
      the queue stay); the old ones WRONGPASS; an order made now is mailed (the worker uses the
      new broker password);
    - Django key: the admin session made before moved to the new key and still works.
    `make rollback` after it works: the release it goes back to gets the live credentials. Then
    the scenario's own secrets again, without the key fallback (one more rotation of each): the
    admin session made under the new key is logged out, the rotated-away values are refused."""
    host, address, domain, ca = all_in_one
    inventory = str(scenario_inventory())
    env = live_env(host)
    old_user, old_db = db_login(host)
    old_redis = urlsplit(env["REDIS_URL"]).password
    old_queue = urlsplit(env["CELERY_BROKER_URL"]).password
    old_key = env["DJANGO_SECRET_KEY"]
    new = {"stack_db_password": new_secret(), "stack_redis_password": new_secret(),
           "stack_redis_queue_password": new_secret(), "django_app_secret_key": new_secret(50)}
    secrets_seen = {"old db": old_db, "old redis": old_redis, "old queue": old_queue, "old key": old_key,
                    **{f"new {k}": v for k, v in new.items()}}
    pids = {unit: host.check_output(f"systemctl show -P MainPID {unit}") for unit in ("redis-server", "redis-server@queue")}
    before = host.check_output("readlink /srv/orders/current")
    jar = admin_login(address, domain, ca, host)
    assert admin_status(address, domain, ca, jar) == 200
    first_session = jar["sessionid"]
    health, orders = streams(address, domain, ca, host)
    # sessions count against the per-client-address rate limit: a gentle rate
    admin = Stream(address, domain, ca, path="/admin/", cookies=jar, rate=2, max_seconds=700, timeout=10)
    restored = False
    try:
        with health, orders, admin:
            time.sleep(2)
            run = deploy(inventory, "-v", *extra(**new, django_app_secret_key_previous=old_key))
            rollback = deploy(inventory, playbook="rollback.yml") if run.returncode == 0 else None
            time.sleep(3)
        check(run)
        assert_no_secret(run, secrets_seen)
        assert len(health.results) > 100 and len(orders.results) > 50 and len(admin.results) > 20
        assert health.failures() == [], health.statuses()
        assert orders.failures() == [], orders.statuses()
        assert admin.failures() == [], admin.statuses()
        assert len(health.releases()) >= 2, health.releases()

        # the database: a new login role, the old one gone
        new_user, password = db_login(host)
        assert (password, new_user != old_user) == (new["stack_db_password"], True), new_user
        for port in (6432, 5432):  # PgBouncer, PostgreSQL
            assert psql(host, new_user, password, port).stdout.strip() == f"{new_user}|orders"
            refused = psql(host, old_user, old_db, port)
            # PostgreSQL: no hba entry (the role is gone); PgBouncer: not in its user list
            assert refused.rc != 0, f"the old login still works on port {port}"
            assert any(m in refused.stderr for m in ("pg_hba.conf entry", "authentication")), refused.stderr
        assert host.check_output(
            f"runuser -u postgres -- psql -X -Atc \"select count(*) from pg_roles where rolname = '{old_user}'\"") == "0"

        # Redis, both instances: live, no restart
        env = live_env(host)
        assert urlsplit(env["REDIS_URL"]).password == new["stack_redis_password"]
        assert urlsplit(env["CELERY_BROKER_URL"]).password == new["stack_redis_queue_password"]
        assert redis_ping(host, new["stack_redis_password"]) == "PONG"
        assert "WRONGPASS" in redis_ping(host, old_redis)
        assert queue_ping(host, new["stack_redis_queue_password"]) == "PONG"
        assert "WRONGPASS" in queue_ping(host, old_queue)
        for unit, pid in pids.items():
            assert host.check_output(f"systemctl show -P MainPID {unit}") == pid, f"{unit} restarted"

        # the Django key: the session moved to the new key
        assert (env["DJANGO_SECRET_KEY"], env["DJANGO_SECRET_KEY_FALLBACKS"]) == (new["django_app_secret_key"], old_key)
        assert jar["sessionid"] != first_session
        assert admin_status(address, domain, ca, jar) == 200

        # the rollback went back one release with the live credentials
        check(rollback)
        assert_no_secret(rollback, secrets_seen)
        assert host.check_output("readlink /srv/orders/current") == before
        assert db_login(host) == (new_user, password)
        assert https_request(address, domain, ca, "GET", "/healthz")[0] == 200
        order_id = create_order(host, address, domain, ca)
        assert len(wait_for_mails(order_id, [host])) == 1, "no mail: the worker cannot use the new broker password"

        restore = deploy(inventory)  # the scenario's own secrets, without a key fallback
        restored = True
        check(restore)
        assert_no_secret(restore, secrets_seen)
        assert db_login(host)[1] == old_db
        assert redis_ping(host, old_redis) == "PONG"
        assert "WRONGPASS" in redis_ping(host, new["stack_redis_password"])
        assert queue_ping(host, old_queue) == "PONG"
        assert "WRONGPASS" in queue_ping(host, new["stack_redis_queue_password"])
        assert live_env(host)["DJANGO_SECRET_KEY"] == old_key
        assert admin_status(address, domain, ca, jar) == 302  # made under the new key: logged out
    finally:
        if not restored:
            check(deploy(inventory))


def test_no_secret_in_check_diff_output(all_in_one):
    """`make check` (--check --diff) with every secret changed: no secret, old or new, shows in
    its diffs or results. (The deploys of the tests above are searched the same way.)"""
    host, _, _, _ = all_in_one
    inventory = str(scenario_inventory())
    env = live_env(host)
    values = {"live db": urlsplit(env["DATABASE_URL"]).password,
              "live redis": urlsplit(env["REDIS_URL"]).password,
              "live key": env["DJANGO_SECRET_KEY"]}
    new = {"stack_db_password": new_secret(), "stack_redis_password": new_secret(),
           "redis_previous_password": new_secret(), "django_app_secret_key": new_secret(50),
           "django_app_secret_key_previous": env["DJANGO_SECRET_KEY"]}
    values.update({f"new {k}": v for k, v in new.items()})
    assert all(len(v) >= 16 for v in values.values()), "a secret to look for is missing"

    dry = deploy(inventory, "--check", "--diff", *extra(**new))
    check(dry)
    assert_no_secret(dry, values)
    # the probe is live: the dry run planned the new release and the files that hold the secrets
    for task in ("postgresql : New login role", "redis : Auth configuration", "django_app : Env file of the release"):
        planned = re.search(r"TASK \[" + re.escape(task) + r"[^\n]*\n(changed|skipping|ok)", plain(dry))
        assert planned and planned.group(1) == "changed", f"the check did not plan {task!r}: the probe proves nothing"
    # and changed nothing
    assert urlsplit(live_env(host)["REDIS_URL"]).password == values["live redis"]
