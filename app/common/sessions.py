"""cached_db sessions that survive a dead Redis: reads fall back to PostgreSQL, cache writes
are dropped. The database stays the source of truth, so an eviction loses nobody's session.
A session's cache entry authenticates (the admin), so reading and deleting it fails closed
(apps/accounts/authcache.py): a logout during a Redis outage still logs out."""

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore

from apps.accounts import authcache
from common import cache as safe


class SessionStore(CachedDBStore):
    def load(self):
        data = authcache.get(self.cache_key)
        if data is None:
            s = self._get_session_from_db()
            if s:
                data = self.decode(s.session_data)
                safe.safe_set(self.cache_key, data, self.get_expiry_age(expiry=s.expire_date))
            else:
                data = {}
        return data

    def exists(self, session_key):
        # The database decides; a stale cache entry must not make a key look taken or free.
        return bool(session_key) and super(CachedDBStore, self).exists(session_key)

    def save(self, must_create=False):
        super(CachedDBStore, self).save(must_create)
        safe.safe_set(self.cache_key, self._session, self.get_expiry_age())

    def delete(self, session_key=None):
        super(CachedDBStore, self).delete(session_key)
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        authcache.invalidate([self.cache_key_prefix + session_key])
