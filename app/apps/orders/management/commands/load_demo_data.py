"""Reproducible demo data for the local environment and benchmarks.

Everything is derived from --seed: the same arguments give the same rows and the same
tokens, and a re-run adds only what is missing (so it is idempotent, and growing --orders
tops the data set up)."""

import random
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import F

from apps.accounts.models import ApiToken
from apps.accounts.services import demo_token, hash_token
from apps.catalog.models import Category, Product
from apps.orders.models import Order, OrderItem, ShippingAddress

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
CATEGORY_NAMES = [
    "Books",
    "Music",
    "Games",
    "Garden",
    "Kitchen",
    "Tools",
    "Toys",
    "Sports",
    "Office",
    "Outdoor",
    "Pets",
    "Bakery",
    "Tea",
    "Coffee",
    "Lighting",
    "Textiles",
]
STATUSES = [s for s, _ in Order.Status.choices]


@contextmanager
def explicit_created_at():
    """Let bulk_create store our deterministic created_at instead of now()."""
    field = Order._meta.get_field("created_at")
    field.auto_now_add = False
    try:
        yield
    finally:
        field.auto_now_add = True


class Command(BaseCommand):
    help = "Load a seeded, reproducible demo data set (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--users", type=int, default=50)
        parser.add_argument("--categories", type=int, default=8)
        parser.add_argument("--products", type=int, default=200)
        parser.add_argument("--orders", type=int, default=5000)
        parser.add_argument("--tokens-file", help="write 'username token' lines here")

    def handle(self, *args, seed, users, categories, products, orders, tokens_file, **opts):
        if min(users, categories, products) < 1 or orders < 0:
            raise CommandError("--users, --categories and --products must be at least 1")
        if categories > len(CATEGORY_NAMES):
            raise CommandError(f"--categories is at most {len(CATEGORY_NAMES)}")
        with transaction.atomic():
            user_list, tokens = self._users(seed, users)
            cats = self._categories(categories)
            prods = self._products(seed, products, cats)
            created = self._orders(seed, orders, user_list, prods)
        self.stdout.write(
            f"demo data: {len(user_list)} users, {len(cats)} categories, {len(prods)} products, "
            f"{Order.objects.filter(user__in=user_list).count()} orders ({created} new)"
        )
        for username, token in tokens[:3]:
            self.stdout.write(f"token {username} {token}")
        if tokens_file:
            with open(tokens_file, "w") as fh:
                fh.writelines(f"{u} {t}\n" for u, t in tokens)
            self.stdout.write(f"all {len(tokens)} tokens written to {tokens_file}")

    def _users(self, seed, count):
        User = get_user_model()
        names = [f"demo{i:04d}" for i in range(1, count + 1)]
        existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        new = []
        for name in names:
            if name not in existing:
                user = User(username=name, email=f"{name}@example.org")
                user.set_unusable_password()
                new.append(user)
        User.objects.bulk_create(new)
        user_list = list(User.objects.filter(username__in=names).order_by("username"))

        tokens = [(u.username, demo_token(seed, u.username)) for u in user_list]
        have = set(
            ApiToken.objects.filter(key_hash__in=[hash_token(t) for _, t in tokens]).values_list(
                "key_hash", flat=True
            )
        )
        ApiToken.objects.bulk_create(
            ApiToken(user=u, name=f"demo seed {seed}", key_hash=hash_token(t), prefix=t[:12])
            for u, (_, t) in zip(user_list, tokens, strict=True)
            if hash_token(t) not in have
        )
        with_address = set(
            ShippingAddress.objects.filter(user__in=user_list).values_list("user_id", flat=True)
        )
        ShippingAddress.objects.bulk_create(
            ShippingAddress(
                user=u,
                name=u.username.title(),
                line1=f"{i} Demo Street",
                city="Demoville",
                postal_code=f"{10000 + i}",
                country="DE",
            )
            for i, u in enumerate(user_list, 1)
            if u.id not in with_address
        )
        return user_list, tokens

    def _categories(self, count):
        cats = []
        for name in CATEGORY_NAMES[:count]:
            cat, _ = Category.objects.get_or_create(slug=name.lower(), defaults={"name": name})
            cats.append(cat)
        return cats

    def _products(self, seed, count, cats):
        skus = [f"DEMO-{i:05d}" for i in range(1, count + 1)]
        existing = set(Product.objects.filter(sku__in=skus).values_list("sku", flat=True))
        new = []
        for i, sku in enumerate(skus, 1):
            if sku in existing:
                continue
            rng = random.Random(f"{seed}:product:{i}")
            new.append(
                Product(
                    sku=sku,
                    name=f"{rng.choice(cats).name} item {i}",
                    category=cats[i % len(cats)],
                    price=Decimal(rng.randint(199, 19999)) / 100,
                    stock=100_000,
                )
            )
        Product.objects.bulk_create(new)
        return list(Product.objects.filter(sku__in=skus).order_by("sku"))

    def _orders(self, seed, count, user_list, prods):
        existing = Order.objects.filter(user__in=user_list).count()
        addresses = dict(
            ShippingAddress.objects.filter(user__in=user_list).values_list("user_id", "id")
        )
        created = 0
        with explicit_created_at():
            for start in range(existing, count, 1000):
                batch, lines = [], []
                for i in range(start, min(start + 1000, count)):
                    rng = random.Random(f"{seed}:order:{i}")
                    user = user_list[i % len(user_list)]
                    picks = rng.sample(prods, k=min(len(prods), rng.randint(1, 4)))
                    items = [(p, rng.randint(1, 5)) for p in picks]
                    batch.append(
                        Order(
                            user=user,
                            status=rng.choice(STATUSES),
                            shipping_address_id=addresses.get(user.id),
                            total=sum((p.price * q for p, q in items), Decimal("0")),
                            created_at=EPOCH + timedelta(minutes=7 * i),
                            # Demo orders are never confirmed by e-mail: the sweep
                            # (apps/orders/tasks.py) skips them.
                            confirmation_sent_at=EPOCH + timedelta(minutes=7 * i),
                        )
                    )
                    lines.append(items)
                Order.objects.bulk_create(batch)
                OrderItem.objects.bulk_create(
                    OrderItem(order=o, product=p, quantity=q, price=p.price)
                    for o, items in zip(batch, lines, strict=True)
                    for p, q in items
                )
                created += len(batch)
        # Demo orders loaded by a release without confirmation_sent_at.
        Order.objects.filter(user__in=user_list, confirmation_sent_at__isnull=True).update(
            confirmation_sent_at=F("created_at")
        )
        return created
