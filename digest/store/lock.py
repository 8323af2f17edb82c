"""A named lock row with an expiry, so only one run sends at a time.

The lock lives in the database, so it holds across processes and machines
that share it. It expires after its ``ttl`` unless refreshed, so a run that
died does not block the next one forever.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_, select, update

from digest.errors import StoreError
from digest.store.base import StoreBase, upsert_into
from digest.store.schema import locks as t_locks


class LockMixin(StoreBase):
    """Acquire, refresh and release named locks."""

    def acquire_lock(self, name: str, owner: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
        """Take the lock ``name`` for ``owner`` until ``now + ttl``; committed on return.

        True if it is now ours (also when we held it already, which renews it);
        False while another owner holds it and it has not expired.
        """
        if ttl <= dt.timedelta(0):
            raise ValueError(f"lock ttl must be positive, got {ttl}")
        c = t_locks.c
        with self._write() as conn:
            stmt = upsert_into(conn, t_locks).values(
                name=name, owner=owner, acquired_at=now, expires_at=now + ttl, ttl_seconds=ttl.total_seconds()
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[c.name],
                set_={k: stmt.excluded[k] for k in ("owner", "acquired_at", "expires_at", "ttl_seconds")},
                where=or_(c.owner == stmt.excluded.owner, c.expires_at <= now),
            )
            conn.execute(stmt)
            holder = conn.execute(select(c.owner).where(c.name == name)).scalar_one()
        return bool(holder == owner)

    def refresh_lock(self, name: str, owner: str, now: dt.datetime) -> None:
        """Push the expiry of our lock to ``now`` + its ttl.

        Raises ``StoreError`` if the lock is no longer ours (it expired and
        another run took it, or it was released).
        """
        c = t_locks.c
        with self._write() as conn:
            row = conn.execute(select(c.ttl_seconds).where(c.name == name, c.owner == owner)).first()
            if row is None:
                raise StoreError(f"database {self.label}: lock {name!r} is no longer held by {owner}")
            expires = now + dt.timedelta(seconds=row.ttl_seconds)
            conn.execute(update(t_locks).where(c.name == name, c.owner == owner).values(expires_at=expires))

    def release_lock(self, name: str, owner: str) -> None:
        """Give the lock up; does nothing if ``owner`` does not hold it."""
        c = t_locks.c
        with self._write() as conn:
            conn.execute(delete(t_locks).where(c.name == name, c.owner == owner))

    def lock_holder(self, name: str, now: dt.datetime) -> str | None:
        """Who holds the lock ``name`` right now, if anyone (for messages)."""
        c = t_locks.c
        with self._read() as conn:
            query = select(c.owner).where(c.name == name, c.expires_at > now)
            return conn.execute(query).scalar()
