"""common/redis_cache.py: one redis-py client per connection pool, and the right pool for it."""

from django.core.cache import cache

from common.redis_cache import ReusedClientRedisCacheClient


def test_one_redis_client_per_pool():
    client = cache._cache.get_client(write=True)
    assert cache._cache.get_client(write=True) is client
    assert cache._cache.get_client() is client  # one server: reads and writes share its pool


def test_each_replica_gets_a_client_of_its_own_pool(monkeypatch):
    """Reads draw a replica at random: the client kept for a replica wraps that replica's pool
    (not the pool of a second draw)."""
    c = ReusedClientRedisCacheClient(
        ["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0", "redis://127.0.0.1:3/0"]
    )
    draws = iter([1, 2, 2, 1, 1, 2])
    monkeypatch.setattr(c, "_get_connection_pool_index", lambda write: 0 if write else next(draws))
    ports = [c.get_client().connection_pool.connection_kwargs["port"] for _ in range(3)]
    assert ports == [2, 3, 3]
    assert c.get_client(write=True).connection_pool.connection_kwargs["port"] == 1
