"""The asynchronous half (docs/decisions.md §15): the queue instance of Redis, Celery's worker
and beat, and the local MTA that delivers the order confirmations.

- the queue instance: its own unit, port and ACL user (the default user is off, no @dangerous
  command), noeviction (at maxmemory a write is refused, nothing queued is dropped), the
  append-only file (a restart keeps what was queued);
- the worker on every worker host, one beat in the environment;
- an order created through nginx is confirmed by mail: the sink's Maildir on a worker host holds
  one message with the order's id and total, after the commit;
- the cache instance filled to its maxmemory evicts cache keys, never a queued task.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import time

import pytest
from test_stack_web import _in_stock_product, _token, curl, parse

from conftest import groups_of, inventory_groups, need, other_host
from drill import ca_file

QUEUE_SOCKET = "/run/redis-queue/redis-server.sock"
CACHE_SOCKET = "/run/redis/redis-server.sock"
MAILDIR = "/var/lib/mailsink/Maildir/new"
WORKER = "orders-celery.service"
BEAT = "orders-celery-beat.service"


def queue_login(host) -> tuple[str, str]:
    """(user, password) of the queue instance, from its auth file (redis:redis 0640)."""
    text = host.file("/etc/redis/auth-queue.conf").content_string
    user, password = re.search(r"^user (\S+) on >(\S+)", text, re.M).groups()
    return user, password


def queue_cli(host, command: str, *, login: bool = True):
    user, password = queue_login(host)
    auth = f"REDISCLI_AUTH='{password}' redis-cli --user {user}" if login else "redis-cli"
    return host.run(f"{auth} -s {QUEUE_SOCKET} --no-auth-warning {command}")


def worker_hosts(host) -> list:
    groups = inventory_groups(host)
    return [other_host(name) for name in (groups.get("worker") or groups.get("app", []))]


def mails_for(order_id: int, hosts) -> list[email.message.EmailMessage]:
    """The sink's messages about this order, on every worker host."""
    found = []
    for h in hosts:
        names = h.run(f"grep -l -F 'order-{order_id}-confirmation@' {MAILDIR}/* 2>/dev/null").stdout.split()
        for name in names:
            raw = h.check_output(f"cat {name}")
            found.append(email.message_from_string(raw + "\n", policy=email.policy.default))
    return found


def wait_for_mails(order_id: int, hosts, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = mails_for(order_id, hosts)
        if found:
            return found
        time.sleep(1)
    return []


def test_queue_instance_runs_on_its_own_port(host):
    need(host, "cache")
    unit = host.service("redis-server@queue")
    assert unit.is_running and unit.is_enabled
    listening = host.check_output("ss -Hltn 'sport = :6380' | awk '{print $4}'").split()
    assert "127.0.0.1:6380" in listening
    assert "0.0.0.0:6380" not in listening and "*:6380" not in listening


def test_queue_instance_refuses_the_default_user_and_dangerous_commands(host):
    need(host, "cache")
    anonymous = queue_cli(host, "PING", login=False)
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    assert queue_cli(host, "PING").stdout.strip() == "PONG"
    # the role's own administrator: its password root's alone, on this host only
    admin = host.file("/etc/redis/queue-admin.password")
    assert (admin.user, admin.group, admin.mode) == ("root", "root", 0o600)
    for command in ("FLUSHALL", "KEYS '*'", "CONFIG GET maxmemory", "SAVE"):
        out = queue_cli(host, command)
        assert "NOPERM" in out.stdout + out.stderr, (command, out.stdout, out.stderr)


def test_queue_instance_never_evicts_and_keeps_its_file(host):
    need(host, "cache")
    conf = host.file("/etc/redis/redis-queue.conf")
    assert conf.user == "redis" and conf.mode == 0o640
    text = conf.content_string
    assert re.search(r"^maxmemory-policy noeviction$", text, re.M)
    assert re.search(r"^appendonly yes$", text, re.M)
    assert host.file("/var/lib/redis/queue/appendonlydir").is_directory


def test_queue_instance_at_maxmemory_refuses_writes_and_drops_nothing(host):
    """Fill the queue instance past its maxmemory with 1 MiB values: a write is refused with
    OOM, every key written before is still there, and it works again once they are deleted."""
    need(host, "cache")
    maxmemory_mb = int(re.search(r"^maxmemory (\d+)mb$", host.file("/etc/redis/redis-queue.conf").content_string,
                                 re.M).group(1))
    user, password = queue_login(host)
    count = maxmemory_mb + 16
    fill = host.run(
        f"python3 -c \"import sys; v='x'*1048576; "
        f"[sys.stdout.write('SET testfill:%d %s\\r\\n' % (i, v)) for i in range({count})]\" "
        f"| REDISCLI_AUTH='{password}' redis-cli --user {user} -s {QUEUE_SOCKET} --no-auth-warning 2>&1 | sort | uniq -c")
    try:
        assert "OOM" in fill.stdout, fill.stdout[-500:]
        stored = int(re.search(r"(\d+) OK$", fill.stdout, re.M).group(1))
        present = sum(int(queue_cli(host, f"EXISTS testfill:{i}").stdout.strip() or 0) for i in range(0, stored, 16))
        assert present == len(range(0, stored, 16)), "a key was evicted from the queue instance"
    finally:
        host.run(f"seq 0 {count} | sed 's/^/DEL testfill:/' | REDISCLI_AUTH='{password}' "
                 f"redis-cli --user {user} -s {QUEUE_SOCKET} --no-auth-warning > /dev/null")
    assert queue_cli(host, "SET testfill:after 1").stdout.strip() == "OK"
    queue_cli(host, "DEL testfill:after")


def test_worker_runs_on_every_worker_host_and_one_beat_in_the_environment(host):
    need(host, "app")
    hosts = worker_hosts(host)
    if host.backend.get_hostname() != hosts[0].backend.get_hostname():
        pytest.skip("checked once, from the first worker host")
    beats = []
    for h in hosts:
        worker = h.service(WORKER)
        assert worker.is_running and worker.is_enabled, h.backend.get_hostname()
        pid = h.check_output(f"systemctl show -P MainPID {WORKER}")
        # it runs the release nginx serves (cwd = the current release)
        assert h.check_output(f"readlink /proc/{pid}/cwd") == h.check_output("readlink -f /srv/orders/current")
        if h.service(BEAT).is_running:
            beats.append(h.backend.get_hostname())
    assert beats == [hosts[0].backend.get_hostname()], beats


def test_mta_listens_on_loopback_only(host):
    need(host, "app")
    assert host.service("postfix").is_running
    listening = host.check_output("ss -Hltn 'sport = :25' | awk '{print $4}'").split()
    assert listening and set(listening) <= {"127.0.0.1:25", "[::1]:25"}, listening


def test_order_created_through_nginx_is_confirmed_by_one_mail(host):
    """POST an order through nginx; the sink on a worker host receives one mail, with the
    order's id and total, after the commit (its Date is not before the order's creation)."""
    if "web" not in groups_of(host):
        pytest.skip("not a web host")
    v = host.ansible.get_variables()
    app = other_host(inventory_groups(host)["app"][0])
    site = {"domain": str(v["site_domain"]), "address": str(v.get("stack_private_address") or v["ansible_host"]),
            "ca": ca_file(v)}
    token, product = _token(app, "demo0003"), _in_stock_product(app)
    body = json.dumps({"items": [{"product_id": product, "quantity": 2}]})
    status, _, created = parse(curl(site, "/api/orders/", "-H", f"Authorization: Bearer {token}",
                                    "-H", "Content-Type: application/json", "--data", body).stdout)
    assert status == 201, created
    order = json.loads(created)
    mails = wait_for_mails(order["id"], worker_hosts(host))
    assert len(mails) == 1, f"{len(mails)} mails for order {order['id']}"
    mail = mails[0]
    assert f"#{order['id']}" in str(mail["Subject"])
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert str(order["total"]) in text, text
    assert str(order["id"]) in text


def test_a_full_cache_instance_loses_no_queued_task(host):
    """The worker stopped, an order queues its confirmation; the cache instance is then filled
    past its maxmemory (it evicts, allkeys-lru). Started again, the worker sends the mail: the
    queue lives in the other instance, which evicts nothing."""
    if not {"web", "app", "cache"} <= groups_of(host):
        pytest.skip("on the all-in-one scenario")
    v = host.ansible.get_variables()
    site = {"domain": str(v["site_domain"]), "address": str(v.get("stack_private_address") or v["ansible_host"]),
            "ca": ca_file(v)}
    token, product = _token(host, "demo0003"), _in_stock_product(host)
    cache_password = re.search(r">(\S+)", host.file("/etc/redis/auth.conf").content_string).group(1)
    cache_cli = f"REDISCLI_AUTH='{cache_password}' redis-cli -s {CACHE_SOCKET} --no-auth-warning"
    maxmemory_mb = int(host.check_output(f"{cache_cli} CONFIG GET maxmemory | tail -1")) // 1048576
    evicted_before = int(re.search(r"evicted_keys:(\d+)", host.check_output(f"{cache_cli} INFO stats")).group(1))
    assert host.run(f"systemctl stop {WORKER}").rc == 0
    try:
        body = json.dumps({"items": [{"product_id": product, "quantity": 1}]})
        status, _, created = parse(curl(site, "/api/orders/", "-H", f"Authorization: Bearer {token}",
                                        "-H", "Content-Type: application/json", "--data", body).stdout)
        assert status == 201, created
        order_id = json.loads(created)["id"]
        host.check_output(
            f"python3 -c \"import sys; v='x'*1048576; "
            f"[sys.stdout.write('SET testfill:%d %s\\r\\n' % (i, v)) for i in range({maxmemory_mb + 32})]\" "
            f"| {cache_cli} > /dev/null")
        evicted = int(re.search(r"evicted_keys:(\d+)", host.check_output(f"{cache_cli} INFO stats")).group(1))
        assert evicted > evicted_before, "the cache instance did not reach its maxmemory"
        assert not mails_for(order_id, [host]), "mailed while the worker was stopped"
    finally:
        host.run(f"{cache_cli} --scan --pattern 'testfill:*' | xargs -r -n 500 {cache_cli} DEL > /dev/null")
        assert host.run(f"systemctl start {WORKER}").rc == 0
    assert len(wait_for_mails(order_id, [host])) == 1
