"""Order confirmation e-mails (apps/orders/tasks.py): queued after commit, sent once, retried
on SMTP errors, swept up when the queueing failed, and never a 5xx for the order itself."""

import json
import logging
import smtplib
import threading
import time
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connections, transaction
from django.test import override_settings
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from apps.accounts.services import create_token
from apps.orders import tasks
from apps.orders.models import Order
from apps.orders.services import create_order
from conftest import api_client, make_order, make_product, make_user

LIST = "/api/orders/"


def post_order(client, product, quantity=2):
    return client.post(
        LIST,
        data=json.dumps({"items": [{"product_id": product.pk, "quantity": quantity}]}),
        content_type="application/json",
    )


def confirmed_order(email="alice@example.org"):
    user = make_user(email=email)
    a = make_product(price=Decimal("2.50"), name="Teapot", sku="TEA-1")
    b = make_product(price=Decimal("10.00"), name="Kettle", sku="KET-1")
    order = make_order(user, [a, b], quantity=3)
    Order.objects.filter(pk=order.pk).update(total=Decimal("37.50"))
    return Order.objects.get(pk=order.pk)


class FailingBackend(EmailBackend):
    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


class RefusingBackend(EmailBackend):
    code = 550

    def send_messages(self, messages):
        raise smtplib.SMTPRecipientsRefused({messages[0].to[0]: (self.code, b"no such user")})


class DeferringBackend(RefusingBackend):
    code = 450


class SlowBackend(EmailBackend):
    """Slow enough that two concurrent deliveries overlap."""

    def send_messages(self, messages):
        time.sleep(0.3)
        return super().send_messages(messages)


# --- Dispatch after commit ---------------------------------------------------------------------


def test_order_is_queued_only_after_commit(api, django_capture_on_commit_callbacks):
    product = make_product(stock=10)
    with mock.patch.object(tasks.send_order_confirmation, "delay") as delay:
        with django_capture_on_commit_callbacks() as callbacks:
            response = post_order(api, product)
            assert response.status_code == 201
            delay.assert_not_called()  # the order is not committed yet
        assert len(callbacks) == 1
        delay.assert_not_called()
        callbacks[0]()
    delay.assert_called_once_with(response.json()["id"])


def test_rolled_back_order_queues_nothing(user, django_capture_on_commit_callbacks):
    product = make_product(stock=10)
    with mock.patch.object(tasks.send_order_confirmation, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            with pytest.raises(RuntimeError), transaction.atomic():
                create_order(user=user, lines={product.pk: 1})
                raise RuntimeError("the caller's transaction fails after the order")
    assert callbacks == []
    delay.assert_not_called()
    assert not Order.objects.exists()


def test_refused_order_queues_nothing(api, django_capture_on_commit_callbacks):
    product = make_product(stock=1)
    with mock.patch.object(tasks.send_order_confirmation, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            assert post_order(api, product, quantity=5).status_code == 409
    assert callbacks == []
    delay.assert_not_called()


@pytest.mark.django_db(transaction=True)
def test_real_commit_queues_once_and_rollback_never():
    user = make_user()
    product = make_product(stock=10)
    with mock.patch.object(tasks.send_order_confirmation, "delay") as delay:
        with pytest.raises(RuntimeError), transaction.atomic():
            create_order(user=user, lines={product.pk: 1})
            raise RuntimeError("rolled back")
        delay.assert_not_called()
        order = create_order(user=user, lines={product.pk: 1})
    delay.assert_called_once_with(order.id)


@pytest.mark.parametrize(
    "error",
    [KombuOperationalError("Error 111 connecting"), ConnectionRefusedError(111, "refused")],
)
def test_broker_down_still_answers_201_and_logs_the_order(
    api, django_capture_on_commit_callbacks, caplog, error
):
    product = make_product(stock=10)
    with mock.patch.object(tasks.send_order_confirmation, "delay", side_effect=error):
        with django_capture_on_commit_callbacks(execute=True):
            response = post_order(api, product)
    assert response.status_code == 201
    order_id = response.json()["id"]
    [record] = [r for r in caplog.records if r.name == "orders.confirmation"]
    assert record.levelno == logging.WARNING
    assert record.order_id == order_id
    assert Order.objects.get(pk=order_id).confirmation_sent_at is None  # left for the sweep


def test_unexpected_publish_error_is_not_a_500_either(api, django_capture_on_commit_callbacks):
    product = make_product(stock=10)
    with mock.patch.object(tasks.send_order_confirmation, "delay", side_effect=ValueError("bug")):
        with django_capture_on_commit_callbacks(execute=True):
            response = post_order(api, product)
    assert response.status_code == 201


def test_unreachable_broker_costs_about_a_second(db):
    """Publishing for real to a closed port, with the settings' publish retry policy."""
    from config.celery import app
    from conftest import closed_port

    conn = app.connection_for_write(f"redis://:x@127.0.0.1:{closed_port()}/1")
    try:
        with mock.patch.object(
            tasks.send_order_confirmation,
            "delay",
            side_effect=lambda order_id: tasks.send_order_confirmation.apply_async(
                (order_id,), connection=conn
            ),
        ):
            start = time.monotonic()
            assert tasks.enqueue_confirmation(12345) is False
            elapsed = time.monotonic() - start
    finally:
        conn.release()
    assert elapsed < 2, elapsed


# --- The task ----------------------------------------------------------------------------------


def test_task_sends_one_mail_with_id_items_and_total(db):
    order = confirmed_order()
    assert tasks.send_order_confirmation(order.id) == "sent"
    [message] = mail.outbox
    assert message.subject == f"Order #{order.id} confirmed"
    assert message.to == ["alice@example.org"]
    assert message.from_email == "orders@shop.example.test"
    assert (
        message.extra_headers["Message-ID"] == f"<order-{order.id}-confirmation@shop.example.test>"
    )
    assert f"#{order.id}" in message.body
    assert "3 x Teapot (TEA-1) at 2.50" in message.body
    assert "3 x Kettle (KET-1) at 10.00" in message.body
    assert "Total: 37.50" in message.body  # as the API shows it
    order.refresh_from_db()
    assert order.confirmation_sent_at is not None

    assert tasks.send_order_confirmation(order.id) == "already_sent"
    assert len(mail.outbox) == 1


def test_task_total_matches_the_api(api, user, django_capture_on_commit_callbacks):
    user.email = "alice@example.org"
    user.save()
    product = make_product(price=Decimal("3.30"), stock=10)
    with mock.patch.object(tasks.send_order_confirmation, "delay"):
        response = post_order(api, product, quantity=3)
    body = response.json()
    tasks.send_order_confirmation(body["id"])
    assert f"Total: {body['total']}\n" in mail.outbox[0].body
    assert body["total"] == "9.90"


def test_user_without_address_is_marked_without_mail(db, caplog):
    order = confirmed_order(email="")
    assert tasks.send_order_confirmation(order.id) == "no_address"
    assert mail.outbox == []
    order.refresh_from_db()
    assert order.confirmation_sent_at is not None


def test_missing_order_is_not_retried(db):
    assert tasks.send_order_confirmation(10**12) == "missing"
    assert mail.outbox == []


def test_smtp_failure_is_retried_and_leaves_the_order_unconfirmed(db):
    order = confirmed_order()
    with (
        override_settings(EMAIL_BACKEND=f"{__name__}.FailingBackend"),
        mock.patch.object(
            tasks.send_order_confirmation, "retry", side_effect=lambda **kw: Retry(exc=kw["exc"])
        ) as retry,
        pytest.raises(Retry),
    ):
        tasks.send_order_confirmation(order.id)
    assert isinstance(retry.call_args.kwargs["exc"], smtplib.SMTPServerDisconnected)
    assert 0 <= retry.call_args.kwargs["countdown"] <= tasks.RETRY_BACKOFF_MAX
    order.refresh_from_db()
    assert order.confirmation_sent_at is None


def test_smtp_failure_called_directly_raises(db):
    order = confirmed_order()
    with (
        override_settings(EMAIL_BACKEND=f"{__name__}.FailingBackend"),
        pytest.raises(smtplib.SMTPException),
    ):
        tasks.send_order_confirmation(order.id)
    order.refresh_from_db()
    assert order.confirmation_sent_at is None


def test_retry_settings():
    task = tasks.send_order_confirmation
    assert task.acks_late is True
    assert task.max_retries == 20
    assert task.retry_backoff and task.retry_jitter
    assert task.retry_backoff_max < 300  # below the minimum visibility timeout
    for exc in (smtplib.SMTPException, OSError):
        assert issubclass(exc, task.autoretry_for)


def test_recipient_refused_for_good_is_not_retried(db):
    order = confirmed_order()
    with override_settings(EMAIL_BACKEND=f"{__name__}.RefusingBackend"):
        assert tasks.send_order_confirmation(order.id) == "refused"
    order.refresh_from_db()
    assert order.confirmation_sent_at is not None


def test_recipient_deferred_is_retried_without_the_address(db):
    order = confirmed_order()
    with (
        override_settings(EMAIL_BACKEND=f"{__name__}.DeferringBackend"),
        pytest.raises(tasks.RecipientDeferred) as exc,
    ):
        tasks.send_order_confirmation(order.id)
    assert "alice" not in str(exc.value) and "450" in str(exc.value)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
    order.refresh_from_db()
    assert order.confirmation_sent_at is None


def test_logs_name_the_order_not_the_customer(db, caplog):
    caplog.set_level(logging.INFO)
    order = confirmed_order()
    tasks.send_order_confirmation(order.id)
    [record] = [r for r in caplog.records if r.name == "orders.confirmation"]
    assert (record.order_id, record.outcome) == (order.id, "sent")
    assert "alice" not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_send_one_mail():
    order = confirmed_order()
    barrier = threading.Barrier(2)
    outcomes = []

    def deliver():
        try:
            barrier.wait()
            outcomes.append(tasks.send_order_confirmation(order.id))
        finally:
            connections.close_all()

    with override_settings(EMAIL_BACKEND=f"{__name__}.SlowBackend"):
        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(outcomes) == ["already_sent", "sent"]
    assert len(mail.outbox) == 1


# --- The sweep ---------------------------------------------------------------------------------


def _aged(order, age, sent=False):
    now = timezone.now()
    Order.objects.filter(pk=order.pk).update(
        created_at=now - age, confirmation_sent_at=now if sent else None
    )
    return order.pk


def test_sweep_queues_only_unconfirmed_orders_of_its_window(db):
    user = make_user()
    due_old = _aged(make_order(user), timedelta(days=6))
    due = _aged(make_order(user), timedelta(minutes=3))
    _aged(make_order(user), timedelta(seconds=30))  # its after-commit task may still run
    _aged(make_order(user), timedelta(days=8))  # too old to confirm
    _aged(make_order(user), timedelta(hours=1), sent=True)
    with mock.patch.object(tasks.send_order_confirmation, "delay") as delay:
        assert tasks.send_pending_confirmations() == 2
        assert [c.args[0] for c in delay.call_args_list] == [due_old, due]  # oldest first
        # Queued once per SWEEP_REQUEUE_SECONDS, not every minute while it keeps retrying.
        assert tasks.send_pending_confirmations() == 0
    assert delay.call_count == 2


def test_sweep_is_bounded(db, monkeypatch):
    user = make_user()
    ids = [_aged(make_order(user), timedelta(minutes=10 - i)) for i in range(4)]
    monkeypatch.setattr(tasks, "SWEEP_BATCH", 3)
    with mock.patch.object(tasks.send_order_confirmation, "delay") as delay:
        assert tasks.send_pending_confirmations() == 3
        assert tasks.send_pending_confirmations() == 1
    assert [c.args[0] for c in delay.call_args_list] == ids


def test_sweep_with_broker_down_queues_the_order_again_next_time(db):
    order_id = _aged(make_order(make_user()), timedelta(minutes=5))
    with mock.patch.object(
        tasks.send_order_confirmation, "delay", side_effect=KombuOperationalError("down")
    ):
        assert tasks.send_pending_confirmations() == 0
    with mock.patch.object(tasks.send_order_confirmation, "delay") as delay:
        assert tasks.send_pending_confirmations() == 1
    delay.assert_called_once_with(order_id)


def test_sweep_with_the_cache_down_still_queues(db, redis_down):
    _aged(make_order(make_user()), timedelta(minutes=5))
    with mock.patch.object(tasks.send_order_confirmation, "delay") as delay:
        assert tasks.send_pending_confirmations() == 1
    assert delay.call_count == 1


def test_sweep_query_uses_the_partial_index(db):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        query = (
            Order.objects.filter(
                confirmation_sent_at__isnull=True,
                created_at__lt=timezone.now(),
                created_at__gt=timezone.now() - timedelta(days=7),
            )
            .order_by("created_at")
            .values_list("id", flat=True)[:500]
        )
        plan = query.explain()
    assert "idx_order_confirmation_due" in plan


def test_beat_schedule_runs_the_sweep_every_minute():
    from django.conf import settings

    from config.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["send-pending-order-confirmations"]
    assert entry["task"] == tasks.send_pending_confirmations.name
    assert entry["schedule"] == 60.0
    assert tasks.send_pending_confirmations.name in app.tasks


# --- End to end: a real worker, the test Redis as broker ---------------------------------------


@pytest.mark.django_db(transaction=True)
def test_worker_sends_the_mail_of_a_new_order():
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun

    from config.celery import app

    user = make_user(email="bob@example.org")
    token = create_token(user)
    product = make_product(stock=10)
    app.control.purge()  # leftovers of earlier tests that committed orders

    def close_db(**kwargs):
        connections.close_all()  # the worker thread's connection, before the test DB goes

    task_postrun.connect(close_db, weak=False)
    root_level = logging.getLogger().level
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="INFO"):
            response = post_order(api_client(token), product)
            assert response.status_code == 201
            deadline = time.monotonic() + 10
            while not mail.outbox and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        task_postrun.disconnect(close_db)
        logging.getLogger().setLevel(root_level)
    [message] = mail.outbox
    assert message.subject == f"Order #{response.json()['id']} confirmed"
    assert message.to == ["bob@example.org"]
    assert Order.objects.get(pk=response.json()["id"]).confirmation_sent_at is not None
