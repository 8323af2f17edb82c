"""Which issue carried each entry, and the weeks held back: the "every entry in one issue" record.

``issue_entries`` has one row per entry that an issue carried (or found too
old to carry: ``expired``), written by ``freeze_issue`` in the freeze's own
transaction. Its primary key is the entry id, so an entry is in at most one
issue. ``held_issues`` remembers weeks held back for having too few entries;
together with the frozen issues it tells when the digest started, so the
first issue does not carry the sources' whole history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, union_all

from digest.models import Entry
from digest.store.base import StoreBase, upsert_into
from digest.store.entries import _entry_from_row, read_entries
from digest.store.schema import entries as t_entries
from digest.store.schema import held_issues as t_held
from digest.store.schema import issue_entries as t_issue_entries
from digest.store.schema import issues as t_issues
from digest.store.schema import utc_text


@dataclass(frozen=True, slots=True)
class IssuedEntry:
    """One ``issue_entries`` row."""

    entry_id: str
    issue_key: str
    expired: bool
    carried_from: str | None
    content_hash: str
    updated_in: str | None


@dataclass(frozen=True, slots=True)
class ChangedEntry:
    """An entry sent earlier whose stored content no longer matches what was shown.

    ``shown_in`` is the issue that last showed it (its "Updated" section, else
    the issue that carried it).
    """

    entry: Entry
    shown_in: str


class CarriedMixin(StoreBase):
    """Reading the carried-entries record and the held weeks."""

    def unissued_entries(self, since: dt.datetime, until: dt.datetime, issue_key: str) -> list[Entry]:
        """Entries with ``since <= when() < until`` that no issue but ``issue_key`` recorded, by when, then id."""
        ie = t_issue_entries.c
        query = (
            select(t_entries)
            .outerjoin(t_issue_entries, ie.entry_id == t_entries.c.id)
            .where(
                t_entries.c.sort_at >= since,
                t_entries.c.sort_at < until,
                or_(ie.entry_id.is_(None), and_(ie.issue_key == issue_key, ie.expired.is_(False))),
            )
            .order_by(t_entries.c.sort_at, t_entries.c.id)
        )
        with self._read() as conn:
            return read_entries(conn, query)

    def entry_issues(self) -> dict[str, str]:
        """The key of the issue each entry went out in, by entry id (expired entries are left out)."""
        c = t_issue_entries.c
        with self._read() as conn:
            rows = conn.execute(select(c.entry_id, c.issue_key).where(c.expired.is_(False))).all()
        return {entry_id: key for entry_id, key in rows}

    def issue_entries(self, issue_key: str | None = None) -> list[IssuedEntry]:
        """The recorded rows, of one issue or of all, by issue then entry id."""
        c = t_issue_entries.c
        query = select(t_issue_entries).order_by(c.issue_key, c.entry_id)
        if issue_key is not None:
            query = query.where(c.issue_key == issue_key)
        with self._read() as conn:
            return [
                IssuedEntry(r.entry_id, r.issue_key, bool(r.expired), r.carried_from, r.content_hash, r.updated_in)
                for r in conn.execute(query)
            ]

    def first_issue_key(self) -> str | None:
        """The earliest key among frozen and held issues: when the digest started (None: never)."""
        keys = union_all(select(t_issues.c.key.label("key")), select(t_held.c.key.label("key"))).subquery()
        with self._read() as conn:
            first: str | None = conn.execute(select(keys.c.key).order_by(keys.c.key).limit(1)).scalar()
        return first

    def hold_issue(self, key: str, now: dt.datetime, entries: int) -> None:
        """Remember that the issue ``key`` was held back with ``entries`` entries (the last hold wins)."""
        utc_text(now)
        with self._write() as conn:
            if conn.execute(select(t_issues.c.key).where(t_issues.c.key == key)).first() is not None:
                return  # frozen meanwhile: it went out, it is not held
            stmt = upsert_into(conn, t_held).values(key=key, held_at=now, entries=entries)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=[t_held.c.key], set_={"held_at": now, "entries": entries})
            )

    def held_issues(self) -> list[tuple[str, dt.datetime, int]]:
        """``(key, held_at, entries)`` of every issue held back, by key (its entries went out later, or wait)."""
        with self._read() as conn:
            rows = conn.execute(select(t_held).order_by(t_held.c.key)).all()
        return [(r.key, r.held_at, r.entries) for r in rows]

    def changed_entries(self, issue_key: str) -> list[ChangedEntry]:
        """Entries other issues carried whose content changed since they were last shown."""
        ie = t_issue_entries.c
        query = (
            select(t_entries, ie.issue_key.label("ie_issue"), ie.updated_in.label("ie_updated"))
            .join(t_issue_entries, ie.entry_id == t_entries.c.id)
            .where(
                ie.expired.is_(False),
                ie.issue_key != issue_key,
                ie.content_hash != t_entries.c.content_hash,
            )
            .order_by(t_entries.c.sort_at, t_entries.c.id)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [ChangedEntry(_entry_from_row(r), r.ie_updated or r.ie_issue) for r in rows]
