"""Order confirmation e-mails, sent by the Celery worker (config/celery.py).

Delivery is at least once, made idempotent by Order.confirmation_sent_at:
- services.create_order queues send_order_confirmation after the order's commit;
- send_pending_confirmations (every 60 s, CELERY_BEAT_SCHEDULE) queues it again for any order
  still unconfirmed after 2 minutes: a publish that failed (broker down), a task lost with its
  broker or given up after its retries;
- the task locks the order row, sends only while confirmation_sent_at is NULL and sets it in
  the same transaction, so concurrent or repeated deliveries send one mail. (The row stays
  locked while the SMTP server answers, EMAIL_TIMEOUT at most per step.)
Not retried: a deleted order; a user without an address and a recipient refused for good
(5xx) are marked as done without a mail.

The window left: a worker killed after the SMTP server accepted the mail but before the commit
(or a commit that fails then) leaves the order unconfirmed, and it is mailed again. The
Message-ID is the same each time, so the duplicate can be recognised (and is dropped by
clients and mail stores that deduplicate on it). Closing the window would need the mail server
to take part in the transaction.
"""

import logging
import smtplib
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from common import cache as safe_cache

from .models import Order, OrderItem

logger = logging.getLogger("orders.confirmation")

# Transient failures worth another attempt: the SMTP server (refused, timed out, 4xx), the
# network, the database (PgBouncer or PostgreSQL restarting).
RETRY_FOR = (OSError, smtplib.SMTPException, OperationalError, InterfaceError)
# Exponential backoff with full jitter: 0-1 s, 0-2 s, 0-4 s ... capped at RETRY_BACKOFF_MAX, so
# 20 retries span at most about 50 minutes. The cap stays below the broker's visibility
# timeout (CELERY_VISIBILITY_TIMEOUT, at least 300): a worker holds a task waiting for its
# countdown unacknowledged, and Redis would hand out a task held longer than that a second time.
RETRY_BACKOFF_MAX = 240
MAX_RETRIES = 20

# What publishing can raise when the broker is away (kombu wraps most of it in its
# OperationalError; redis-py and the socket layer can surface directly).
PUBLISH_ERRORS = (KombuError, RedisError, OSError)

# The sweep: orders older than SWEEP_MIN_AGE (their after-commit task had time to run) and
# younger than SWEEP_MAX_AGE (a week-old confirmation is no use), oldest first, at most
# SWEEP_BATCH per run.
SWEEP_MIN_AGE = timedelta(minutes=2)
SWEEP_MAX_AGE = timedelta(days=7)
SWEEP_BATCH = 500
# Pages of due orders one run looks through for ones not queued recently (SWEEP_REQUEUE_SECONDS).
SWEEP_SCAN_PAGES = 20
# An order the sweep has queued is not queued again for this long: a task keeps retrying for up
# to ~50 minutes, and a sweep every minute would otherwise start a new retrying task per order
# and minute while the SMTP server is down.
SWEEP_REQUEUE_SECONDS = 3600


def _message_id(order_id: int) -> str:
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip(" >") or "localhost"
    return f"<order-{order_id}-confirmation@{domain}>"


def _confirmation(order: Order, items: list[OrderItem]) -> EmailMessage:
    # Amounts as the API shows them (serializers.order_data: str() of the Decimal).
    lines = [
        f"  {item.quantity} x {item.product.name} ({item.product.sku}) at {item.price}"
        for item in items
    ]
    body = "\n".join(
        [
            f"Thank you for your order #{order.id}.",
            "",
            *lines,
            "",
            f"Total: {order.total}",
            "",
        ]
    )
    return EmailMessage(
        subject=f"Order #{order.id} confirmed",
        body=body,
        to=[order.user.email],
        headers={"Message-ID": _message_id(order.id)},
    )


class RecipientDeferred(smtplib.SMTPException):
    """The SMTP server refused the recipient for now (4xx). Raised instead of smtplib's
    SMTPRecipientsRefused, whose message holds the customer's address and would end up in the
    worker's retry and failure log lines."""


def _send(message: EmailMessage) -> str:
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _ in exc.recipients.values()})
        if any(code < 500 for code in codes):
            raise RecipientDeferred(f"recipient refused with {codes}") from None
        # 5xx: the address does not exist or never takes mail; retrying cannot help.
        return "refused"
    return "sent"


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=RETRY_FOR,
    retry_backoff=True,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def send_order_confirmation(self, order_id: int) -> str:
    """Mail the order's confirmation once. Returns the outcome (also logged)."""
    with transaction.atomic():
        # The row lock serialises concurrent deliveries of the same order: the second one waits
        # here and then sees confirmation_sent_at set. of=("self",): the user row stays unlocked.
        order = (
            Order.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(pk=order_id)
            .first()
        )
        if order is None:
            # Deleted (or never committed): nothing to retry for.
            outcome = "missing"
        elif order.confirmation_sent_at is not None:
            outcome = "already_sent"
        elif not order.user.email:
            outcome = "no_address"
        else:
            items = list(OrderItem.objects.filter(order=order).select_related("product"))
            # Raises for anything but acceptance by the SMTP server: the transaction rolls back,
            # confirmation_sent_at stays NULL and the task is retried (RETRY_FOR).
            outcome = _send(_confirmation(order, items))
        if outcome in ("sent", "no_address", "refused"):
            # A queryset update: one statement, no post_save (the cached order detail does not
            # show this field, so there is nothing to invalidate).
            Order.objects.filter(pk=order_id).update(confirmation_sent_at=timezone.now())
    # The order id only: customers' addresses stay out of the logs.
    logger.log(
        logging.INFO if outcome in ("sent", "already_sent") else logging.WARNING,
        "order confirmation",
        extra={"order_id": order_id, "outcome": outcome, "retries": self.request.retries or 0},
    )
    return outcome


def enqueue_confirmation(order_id: int) -> bool:
    """Queue the confirmation of a committed order. A broker that cannot be reached costs the
    publish retry policy (about a second, CELERY_TASK_PUBLISH_RETRY_POLICY) and a warning, never
    the caller's response: the sweep queues the order again later. True if it was queued."""
    try:
        send_order_confirmation.delay(order_id)
    except PUBLISH_ERRORS as exc:
        logger.warning(
            "order confirmation not queued, the sweep will retry",
            extra={"order_id": order_id, "error": type(exc).__name__},
        )
        return False
    return True


def _due_order_ids(now):
    """Ids of the orders owed a confirmation, oldest first, a page (SWEEP_BATCH) at a time, at
    most SWEEP_SCAN_PAGES pages. Served by the partial index idx_order_confirmation_due."""
    due = (
        Order.objects.filter(
            confirmation_sent_at__isnull=True,
            created_at__lt=now - SWEEP_MIN_AGE,
            created_at__gt=now - SWEEP_MAX_AGE,
        )
        .order_by("created_at", "id")
        .values_list("created_at", "id")
    )
    after = None
    for _ in range(SWEEP_SCAN_PAGES):
        page = due
        if after is not None:  # keyset pagination: no OFFSET over rows already seen
            page = due.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], id__gt=after[1]))
        rows = list(page[:SWEEP_BATCH])
        if rows:
            yield [order_id for _, order_id in rows]
        if len(rows) < SWEEP_BATCH:
            return
        after = rows[-1]


def _not_swept_recently(pages):
    """(cache key, order id) of the orders this sweep has not queued within
    SWEEP_REQUEUE_SECONDS. With Redis (the cache, not the broker) away, all of them: the task is
    idempotent, and a duplicate attempt is better than a confirmation never sent."""
    for page in pages:
        keys = {f"order-confirmation-swept:{order_id}": order_id for order_id in page}
        recent = safe_cache.safe_get_many(list(keys))
        yield from ((key, order_id) for key, order_id in keys.items() if key not in recent)


@shared_task
def send_pending_confirmations() -> int:
    """The safety net (every 60 s): queue the confirmation of orders still unconfirmed after
    SWEEP_MIN_AGE, oldest first, at most SWEEP_BATCH per run. Returns how many were queued."""
    queued = 0
    for key, order_id in _not_swept_recently(_due_order_ids(timezone.now())):
        if queued == SWEEP_BATCH or not enqueue_confirmation(order_id):
            break  # enough for one run, or the broker is away: the next run goes on
        safe_cache.safe_set(key, 1, SWEEP_REQUEUE_SECONDS)
        queued += 1
    if queued:
        logger.info("order confirmation sweep", extra={"queued": queued})
    return queued
