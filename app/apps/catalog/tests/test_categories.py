import pytest

from conftest import make_category

pytestmark = pytest.mark.django_db

URL = "/api/categories/"


@pytest.mark.parametrize("rows", [1, 40])
def test_categories_query_budget(anon, django_assert_num_queries, rows):
    for _ in range(rows):
        make_category()
    with django_assert_num_queries(1):  # cold: one query, then cached in Redis
        first = anon.get(URL)
    with django_assert_num_queries(0):  # warm: none
        second = anon.get(URL)
    assert first.status_code == second.status_code == 200
    assert len(first.json()["results"]) == rows
    assert first.json() == second.json()


def test_only_active_categories_sorted(anon):
    make_category(name="Zebra", slug="zebra")
    make_category(name="Apple", slug="apple")
    make_category(name="Hidden", slug="hidden", is_active=False)
    names = [c["name"] for c in anon.get(URL).json()["results"]]
    assert names == ["Apple", "Zebra"]


def test_cache_is_invalidated_on_change(anon, django_capture_on_commit_callbacks):
    cat = make_category(name="Old", slug="old")
    assert anon.get(URL).json()["results"][0]["name"] == "Old"
    with django_capture_on_commit_callbacks(execute=True):
        cat.name = "New"
        cat.save()
    assert anon.get(URL).json()["results"][0]["name"] == "New"
    with django_capture_on_commit_callbacks(execute=True):
        cat.delete()
    assert anon.get(URL).json()["results"] == []
