"""Pruning: the store grows with the work, not with time (``digest prune``).

Two things grow for ever without it: the send ledger (one row per
subscriber per issue) and the entries of sources that moved on. ``prune``

* compacts the ledger rows of every issue finished (no row left to send)
  longer than ``keep_deliveries`` ago into per-variant, per-state counts in
  ``delivery_counts``, which ``digest issues`` and ``digest report`` read for
  such an issue; a compacted issue is never planned again, so nobody gets it
  twice;
* deletes the entries that no source has listed for ``keep_entries`` (by
  ``entries.last_seen`` and every sighting's ``last_seen``, never by the
  published date: a listing may show items from 2016 for ever) and that no
  unfinished issue carries, and keeps their ids in ``pruned_entries``, which
  ``record_fetch`` checks, so a pruned entry listed again is unchanged, not new.

``last_seen`` is kept exact by ``record_fetch`` through :func:`mark_listed` and :func:`mark_relisted`:
after any fetch that worked at time T, the entries of the source's listing
have ``last_seen = T`` (a 304 re-stamps those of the previous listing).
The time of the last prune is kept in ``store_keys`` (``digest run`` prunes
once a day).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, case, delete, func, insert, select, update

from digest.models import Delivery
from digest.store.base import StoreBase, chunked, upsert_into
from digest.store.schema import deliveries as t_deliveries
from digest.store.schema import delivery_counts as t_counts
from digest.store.schema import entries as t_entries
from digest.store.schema import entry_sightings as t_sightings
from digest.store.schema import from_utc_text, utc_text
from digest.store.schema import issue_entries as t_issue_entries
from digest.store.schema import issues as t_issues
from digest.store.schema import pruned_entries as t_pruned
from digest.store.schema import sources as t_sources
from digest.store.schema import store_keys as t_keys
from digest.store.schema import verp_tags as t_verp

#: The ``store_keys`` row that holds the time of the last prune.
LAST_PRUNE = "last_prune"
_OPEN = (Delivery.PENDING.value, Delivery.CLAIMED.value, Delivery.FAILED_TEMPORARY.value)


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """What one ``prune`` did."""

    issues: int = 0
    deliveries: int = 0
    entries: int = 0


def pruned_ids(conn: Connection, ids: Sequence[str]) -> set[str]:
    """Those of ``ids`` that ``prune`` deleted."""
    out: set[str] = set()
    for chunk in chunked(ids, 500):
        out.update(conn.execute(select(t_pruned.c.id).where(t_pruned.c.id.in_(chunk))).scalars())
    return out


def mark_listed(conn: Connection, unchanged: Sequence[str], now: dt.datetime) -> None:
    """Stamp ``last_seen`` on ``unchanged``: a source's own entries that a fetch listed unchanged.

    New and updated rows are written with ``last_seen`` already; a 304 lists
    again whatever the previous listing did (``mark_relisted``).
    """
    for chunk in chunked(unchanged, 500):
        conn.execute(update(t_entries).where(t_entries.c.id.in_(chunk)).values(last_seen=now))


def mark_relisted(conn: Connection, sources: Sequence[str], now: dt.datetime) -> None:
    """Stamp ``last_seen`` for ``sources`` that answered 304; call before their ``last_ok`` moves.

    Their previous listing is listed again: the rows (entries and sightings)
    stamped at each one's last fetch that worked. One statement per table for
    all of them, not one per source.
    """
    for chunk in chunked(sources, 500):
        for table in (t_entries, t_sightings):
            prev = select(t_sources.c.last_ok).where(t_sources.c.name == table.c.source).scalar_subquery()
            stamped = update(table).where(table.c.source.in_(chunk), table.c.last_seen >= prev)
            conn.execute(stamped.values(last_seen=now))


def compacted_issues(conn: Connection) -> set[str]:
    """Keys of the issues whose ledger ``prune`` compacted."""
    return set(conn.execute(select(t_counts.c.issue_key).distinct()).scalars())


def is_compacted(conn: Connection, key: str) -> bool:
    """Whether ``prune`` compacted issue ``key``'s ledger (it must never be planned again)."""
    if not conn.dialect.has_table(conn, t_counts.name):
        return False  # a store opened with fewer migrations (tests of older schemas) has compacted nothing
    return conn.execute(select(t_counts.c.issue_key).where(t_counts.c.issue_key == key).limit(1)).first() is not None


class PruningMixin(StoreBase):
    """``prune`` and the time it last ran."""

    def last_prune(self) -> dt.datetime | None:
        """When ``prune`` last ran, or None."""
        with self._read() as conn:
            raw = conn.execute(select(t_keys.c.value).where(t_keys.c.name == LAST_PRUNE)).scalar()
        return None if raw is None else from_utc_text(raw)

    def prune(self, now: dt.datetime, *, keep_deliveries: dt.timedelta, keep_entries: dt.timedelta) -> PruneCounts:
        """Compact old finished issues' ledgers, delete entries long unlisted; record ``now`` as the last prune.

        Each issue is compacted in its own transaction, and the entries in
        chunks, so a prune of a big store never holds the write lock for long.
        """
        utc_text(now)
        issues = rows = 0
        for key in self._finished_before(now - keep_deliveries):
            n = self._compact(key)
            issues, rows = issues + (n > 0), rows + n
        entries = self._prune_entries(now, now - keep_entries)
        with self._write() as conn:
            stmt = upsert_into(conn, t_keys).values(name=LAST_PRUNE, value=utc_text(now))
            conn.execute(stmt.on_conflict_do_update(index_elements=[t_keys.c.name], set_={"value": utc_text(now)}))
        return PruneCounts(issues=issues, deliveries=rows, entries=entries)

    def _finished_before(self, cutoff: dt.datetime) -> list[str]:
        """Issues with ledger rows, none of them open, the last of them changed before ``cutoff``."""
        c = t_deliveries.c
        is_open = func.sum(case((c.state.in_(_OPEN), 1), else_=0))
        query = (
            select(c.issue_key)
            .group_by(c.issue_key)
            .having(func.max(c.updated_at) < cutoff, is_open == 0)
            .order_by(c.issue_key)
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def _compact(self, key: str) -> int:
        c = t_deliveries.c
        with self._write() as conn:
            # Checked again inside the write: a row may have been re-opened (--retry-failed) since.
            if conn.execute(select(c.email).where(c.issue_key == key, c.state.in_(_OPEN)).limit(1)).first():
                return 0
            groups = conn.execute(
                select(c.variant, c.state, func.count(), func.min(c.updated_at), func.max(c.updated_at))
                .where(c.issue_key == key)
                .group_by(c.variant, c.state)
            ).all()
            if not groups:
                return 0
            conn.execute(
                insert(t_counts),
                [
                    {"issue_key": key, "variant": v, "state": s, "count": int(n), "first_at": lo, "last_at": hi}
                    for v, s, n, lo, hi in groups
                ],
            )
            conn.execute(delete(t_deliveries).where(c.issue_key == key))
            # A bounce for a message sent that long ago finds nothing to score: its VERP tags go too.
            conn.execute(delete(t_verp).where(t_verp.c.issue_key == key))
        return sum(int(g[2]) for g in groups)

    def _prune_entries(self, now: dt.datetime, cutoff: dt.datetime) -> int:
        e, s = t_entries.c, t_sightings.c
        recent_sighting = select(s.entry_id).where(s.last_seen >= cutoff)
        with self._read() as conn:
            needed = self._needed_entries(conn)
            stale = conn.execute(
                select(e.id, e.source).where(e.last_seen < cutoff, e.id.not_in(recent_sighting)).order_by(e.id)
            ).all()
        doomed = [eid for eid, _ in stale if eid not in needed]
        pruned = 0
        for chunk in chunked(doomed, 500):
            with self._write() as conn:
                # Checked again inside the write: a fetch since the read may have listed one again.
                still = conn.execute(
                    select(e.id, e.source).where(e.id.in_(chunk), e.last_seen < cutoff, e.id.not_in(recent_sighting))
                ).all()
                if not still:
                    continue
                ids = [eid for eid, _ in still]
                conn.execute(
                    upsert_into(conn, t_pruned).on_conflict_do_nothing(index_elements=[t_pruned.c.id]),
                    [{"id": eid, "source": source, "pruned_at": now} for eid, source in still],
                )
                conn.execute(delete(t_sightings).where(s.entry_id.in_(ids)))
                conn.execute(delete(t_entries).where(e.id.in_(ids)))
                pruned += len(ids)
        return pruned

    def _needed_entries(self, conn: Connection) -> set[str]:
        """Ids carried by an issue not finished: rows still open, or frozen with none planned yet."""
        c = t_deliveries.c
        frozen = set(conn.execute(select(t_issues.c.key)).scalars())
        planned = set(conn.execute(select(c.issue_key).distinct()).scalars())
        still_open = set(conn.execute(select(c.issue_key).where(c.state.in_(_OPEN)).distinct()).scalars())
        unfinished = still_open | (frozen - planned - compacted_issues(conn))
        needed: set[str] = set()
        for chunk in chunked(sorted(unfinished), 200):
            query = select(t_issue_entries.c.entry_id).where(t_issue_entries.c.issue_key.in_(chunk))
            needed.update(conn.execute(query).scalars())
        return needed
