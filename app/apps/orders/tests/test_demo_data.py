import pytest
from django.core.management import call_command

from apps.accounts.services import demo_token
from apps.catalog.models import Product
from apps.orders.models import Order, OrderItem
from conftest import api_client

pytestmark = pytest.mark.django_db

ARGS = ["--seed", "7", "--users", "4", "--categories", "3", "--products", "12", "--orders", "150"]


def test_demo_data_is_reproducible_and_idempotent(tmp_path, capsys):
    tokens_file = tmp_path / "tokens.txt"
    call_command("load_demo_data", *ARGS, "--tokens-file", str(tokens_file))
    first = (Order.objects.count(), OrderItem.objects.count(), Product.objects.count())
    totals = list(Order.objects.order_by("created_at").values_list("total", flat=True))
    assert first[0] == 150 and first[2] == 12

    call_command("load_demo_data", *ARGS)
    assert (Order.objects.count(), OrderItem.objects.count(), Product.objects.count()) == first
    assert list(Order.objects.order_by("created_at").values_list("total", flat=True)) == totals

    lines = tokens_file.read_text().split()
    assert lines[:2] == ["demo0001", demo_token(7, "demo0001")]
    out = capsys.readouterr().out
    assert f"token demo0001 {demo_token(7, 'demo0001')}" in out

    response = api_client(demo_token(7, "demo0002")).get("/api/orders/")
    assert response.status_code == 200
    assert response.json()["count"] == 150 // 4 + (1 if 150 % 4 > 1 else 0)


def test_demo_data_tops_up(capsys):
    call_command("load_demo_data", *ARGS[:-1], "10")
    call_command("load_demo_data", *ARGS[:-1], "25")
    assert Order.objects.count() == 25
