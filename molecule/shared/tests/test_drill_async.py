"""Drills of the asynchronous half (docs/decisions.md §15), on the all-in-one scenario: each
counts the orders the stack acknowledged (201) and checks that each gets exactly one
confirmation in the sink's Maildir.

- a worker's pool process killed in the middle of a task: the task runs again, one mail;
- a warm shutdown (what a release switch does) while a task runs: it finishes first, one mail;
- the broker (the queue instance of Redis) restarted with tasks queued: all are delivered;
- the MTA down: orders are still created; the mails go out once it is back.

An SMTP session is held open on purpose with postfix's `sleep` restriction (reverted after each
drill), so that "in the middle of a task" is a moment the test chooses, not a race.
"""

from __future__ import annotations

import json
import time

import pytest
from test_stack_async import WORKER, mails_for, queue_cli, wait_for_mails
from test_stack_web import _in_stock_product, _token, curl, parse

from conftest import ALL_GROUPS, groups_of
from drill import ca_file

RESTRICTIONS = "permit_mynetworks, reject"


@pytest.fixture
def stack(host):
    if not ALL_GROUPS <= groups_of(host):
        pytest.skip("the drills run on the all-in-one scenario (default)")
    v = host.ansible.get_variables()
    site = {"domain": str(v["site_domain"]), "address": str(v.get("stack_private_address") or v["ansible_host"]),
            "ca": ca_file(v)}
    token, product = _token(host, "demo0003"), _in_stock_product(host)

    def order() -> int:
        body = json.dumps({"items": [{"product_id": product, "quantity": 1}]})
        status, _, created = parse(curl(site, "/api/orders/", "-H", f"Authorization: Bearer {token}",
                                        "-H", "Content-Type: application/json", "--data", body).stdout)
        assert status == 201, created
        return json.loads(created)["id"]

    yield host, order
    # whatever a drill left behind: postfix accepts at once, the worker and the broker run
    host.run(f"postconf -e 'smtpd_client_restrictions = {RESTRICTIONS}' && postfix reload")
    host.run(f"systemctl start postfix redis-server@queue {WORKER}")


def hold_smtp(host, seconds: int) -> None:
    """New SMTP sessions wait ``seconds`` before postfix answers the recipient."""
    assert host.run(f"postconf -e 'smtpd_client_restrictions = sleep {seconds}, {RESTRICTIONS}' "
                    "&& postfix reload").rc == 0


def release_smtp(host) -> None:
    assert host.run(f"postconf -e 'smtpd_client_restrictions = {RESTRICTIONS}' && postfix reload").rc == 0


def smtp_client_pid(host, timeout: float = 30) -> int:
    """The pid of the worker process that holds an SMTP session open (the task mid-way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = host.run("ss -Htnp state established 'dport = :25' | grep -o 'pid=[0-9]*' | head -1").stdout.strip()
        if out:
            return int(out.removeprefix("pid="))
        time.sleep(0.2)
    raise AssertionError("no worker process opened an SMTP session")


def test_a_pool_process_killed_mid_task_runs_it_again_and_mails_once(stack):
    host, order = stack
    hold_smtp(host, 8)
    order_id = order()
    pid = smtp_client_pid(host)
    worker_pid = int(host.check_output(f"systemctl show -P MainPID {WORKER}"))
    assert pid != worker_pid, "the task ran in the main process, not a pool process"
    assert host.run(f"kill -KILL {pid}").rc == 0
    release_smtp(host)
    mails = wait_for_mails(order_id, [host], timeout=60)
    time.sleep(3)  # a second delivery would arrive within the retry's first backoff
    assert len(mails_for(order_id, [host])) == 1
    assert mails
    assert host.service(WORKER).is_running
    assert int(host.check_output(f"systemctl show -P MainPID {WORKER}")) == worker_pid


def test_a_warm_shutdown_lets_the_running_task_finish(stack):
    """`systemctl restart` of the worker (the release switch does this) while a task waits on
    SMTP: the stop waits for the task, which sends its mail once; the new worker starts after."""
    host, order = stack
    hold_smtp(host, 5)
    order_id = order()
    smtp_client_pid(host)
    started = time.monotonic()
    assert host.run(f"systemctl restart {WORKER}").rc == 0
    took = time.monotonic() - started
    release_smtp(host)
    assert len(mails_for(order_id, [host])) == 1, "the running task did not finish before the stop"
    assert took >= 2, f"the restart took {took:.1f} s: it did not wait for the running task"
    time.sleep(3)
    assert len(mails_for(order_id, [host])) == 1
    assert host.service(WORKER).is_running


def test_tasks_queued_before_a_broker_restart_are_delivered(stack):
    host, order = stack
    assert host.run(f"systemctl stop {WORKER}").rc == 0
    ids = [order() for _ in range(5)]
    queued = int(queue_cli(host, "LLEN celery").stdout.strip() or 0)
    assert queued >= len(ids), f"{queued} tasks queued for {len(ids)} orders"
    assert host.run("systemctl restart redis-server@queue").rc == 0
    assert int(queue_cli(host, "LLEN celery").stdout.strip() or 0) == queued, "the restart lost queued tasks"
    assert host.run(f"systemctl start {WORKER}").rc == 0
    for order_id in ids:
        assert len(wait_for_mails(order_id, [host], timeout=60)) == 1, order_id


def test_orders_are_created_while_the_mta_is_down_and_mailed_when_it_returns(stack):
    host, order = stack
    assert host.run("systemctl stop postfix").rc == 0
    ids = [order() for _ in range(3)]
    time.sleep(5)  # the tasks run, fail to connect, and wait for their retry
    assert not any(mails_for(i, [host]) for i in ids)
    assert host.run("systemctl start postfix").rc == 0
    for order_id in ids:
        assert len(wait_for_mails(order_id, [host], timeout=90)) == 1, order_id
