"""Django's RedisCache with one redis-py client per connection pool, instead of one per call.

Django's own RedisCacheClient.get_client() builds a new redis.Redis for every cache operation,
and redis-py's constructor copies its ~170 response callbacks each time: 0.16 ms per call in the
order detail's profile (docs/benchmarks.md), two calls per authenticated request. A redis.Redis
only wraps its pool and is thread-safe, so one per pool does the same work. Hand-rolled rather than
django-redis, which caches its client too but brings its own options, key format and serializer:
this keeps Django's backend, its settings and its keys as they are."""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class ReusedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)  # random among replicas for reads
        client = self._clients.get(index)
        if client is None:
            # the pool of this very index (_get_connection_pool would draw a replica again);
            # two threads may both get here: one of the two clients is kept, both work
            if index not in self._pools:
                self._pools[index] = self._pool_class.from_url(
                    self._servers[index], **self._pool_options
                )
            client = self._clients[index] = self._client(connection_pool=self._pools[index])
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient
