"""Entries and source state: what was gathered, and what to ask a source next time.

An entry is keyed by its stable id. Re-fetching an entry whose content hash
is unchanged writes nothing; a changed one is updated in place, keeping its
``first_seen``. An id already stored from another source is a *sighting*:
the entry row (and its ``source``) stays the first source's, and what the
other source showed (its link, title and content hash, first and last seen)
goes to ``entry_sightings``, so two feeds carrying one URL no longer
overwrite each other on every fetch. ``entries()`` returns each entry with
its sightings in ``Entry.also``. A source's etag and item count are only
replaced by a fetch that worked; a failed one only counts the failure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, Select, func, or_, select, update

from digest.models import Author, Entry, FetchStatus, Sighting, SourceResult, SourceState
from digest.store.base import StoreBase, chunked, upsert_into
from digest.store.fetchlog import log_fetches
from digest.store.pruning import mark_listed, mark_relisted, pruned_ids
from digest.store.schema import entries as t_entries
from digest.store.schema import entry_sightings as t_sightings
from digest.store.schema import sources as t_sources
from digest.store.schema import utc_text

_FAILED = frozenset({FetchStatus.FAILED, FetchStatus.BROKEN})


@dataclass(frozen=True, slots=True)
class FetchCounts:
    """What one ``record_fetch`` did to the stored entries.

    A sighting counts like an entry of its source: ``new`` the first time
    the source carries the id, ``updated`` when what it shows changed,
    ``unchanged`` otherwise.
    """

    new: int = 0
    updated: int = 0
    unchanged: int = 0


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _authors_json(authors: Iterable[Author]) -> str:
    return _dumps([{"name": a.name, "affiliation": a.affiliation} for a in authors])


def content_hash(entry: Entry) -> str:
    """sha256 over the fields a reader sees; ``first_seen`` is the store's, not the source's."""
    published = None if entry.published is None else entry.published.isoformat()
    parts = [
        entry.source,
        entry.title,
        entry.link,
        entry.summary,
        entry.content,
        [[a.name, a.affiliation] for a in entry.authors],
        published,
        list(entry.tags),
        entry.title_derived,
    ]
    return hashlib.sha256(_dumps(parts).encode("utf-8")).hexdigest()


def _offset_seconds(when: dt.datetime | None) -> int | None:
    if when is None:
        return None
    offset = when.utcoffset()
    if offset is None:
        raise ValueError(f"the store takes timezone-aware datetimes only, got {when!r}")
    return int(offset.total_seconds())


def _entry_row(entry: Entry, digest: str, first_seen: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": entry.id,
        "source": entry.source,
        "title": entry.title,
        "link": entry.link,
        "summary": entry.summary,
        "content": entry.content,
        "authors": _authors_json(entry.authors),
        "tags": _dumps(list(entry.tags)),
        "published": entry.published,
        "published_offset": _offset_seconds(entry.published),
        "first_seen": first_seen,
        "updated_at": now,
        "last_seen": now,
        "sort_at": entry.published or first_seen,
        "title_derived": entry.title_derived,
        "content_hash": digest,
    }


def _sighting_row(entry: Entry, digest: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "entry_id": entry.id,
        "source": entry.source,
        "first_seen": now,
        "last_seen": now,
        "link": entry.link,
        "title": entry.title,
        "content_hash": digest,
    }


def _entry_from_row(row: Row[Any], also: tuple[Sighting, ...] = ()) -> Entry:
    published: dt.datetime | None = row.published
    if published is not None and row.published_offset is not None:
        published = published.astimezone(dt.timezone(dt.timedelta(seconds=row.published_offset)))
    return Entry(
        id=row.id,
        source=row.source,
        title=row.title,
        link=row.link,
        summary=row.summary,
        content=row.content,
        authors=tuple(Author(a["name"], a.get("affiliation", "")) for a in json.loads(row.authors)),
        published=published,
        tags=tuple(json.loads(row.tags)),
        title_derived=bool(row.title_derived),
        first_seen=row.first_seen,
        also=also,
    )


def read_entries(conn: Connection, query: Select[Any]) -> list[Entry]:
    """The entries ``query`` (a select of entry rows) gives, each with its sightings in ``Entry.also``.

    Every read of entries for an issue goes through here, so "via A, B" never depends on which read it was.
    """
    ids = query.with_only_columns(t_entries.c.id).order_by(None)
    also_query = (
        select(t_sightings.c.entry_id, t_sightings.c.source, t_sightings.c.link)
        .where(t_sightings.c.entry_id.in_(ids))
        .order_by(t_sightings.c.entry_id, t_sightings.c.first_seen, t_sightings.c.source)
    )
    also: dict[str, list[Sighting]] = {}
    for eid, name, link in conn.execute(also_query):
        also.setdefault(eid, []).append(Sighting(name, link))
    return [_entry_from_row(row, tuple(also.get(row.id, ()))) for row in conn.execute(query)]


class EntriesMixin(StoreBase):
    """Entries and per-source fetch state."""

    def source_states(self) -> dict[str, SourceState]:
        """The remembered state of every source that was ever fetched, by name."""
        with self._read() as conn:
            rows = conn.execute(select(t_sources)).all()
        return {
            r.name: SourceState(
                etag=r.etag, last_modified=r.last_modified, item_count=r.item_count, failures=r.failures
            )
            for r in rows
        }

    def record_fetch(self, result: SourceResult, now: dt.datetime) -> FetchCounts:
        """Store one source's outcome in one transaction; return what changed.

        New entries get ``first_seen=now``; an entry whose content changed is
        updated in place; unchanged rows only get ``last_seen=now`` (as do the
        source's entries of its last listing on a 304). An id ``digest prune``
        deleted counts as unchanged and is not stored again. A working fetch
        stores ``result.state`` and resets the failure count; a failed or
        broken one adds one failure and keeps the etag and item count.
        """
        [counts] = self.record_fetches([result], now)
        return counts

    def record_fetches(self, results: Sequence[SourceResult], now: dt.datetime) -> list[FetchCounts]:
        """``record_fetch`` of several sources in one transaction: all are stored, or none.

        One commit for a batch of sources instead of one each (a fetch of many
        sources that answer 304 writes a few rows per source). Each source's
        entries and its new state still go in together, so an ETag is never
        stored without the entries it stands for. A value the database refuses
        rolls back the whole batch; the caller stores the sources one by one then.
        """
        utc_text(now)  # refuse a naive ``now`` before touching anything
        with self._write() as conn:
            counts = [self._store_entries(conn, result, now) for result in results]
            # Before their last_ok moves (below): a 304 lists again what the previous listing did.
            mark_relisted(conn, [r.source for r in results if r.status == FetchStatus.NOT_MODIFIED], now)
            self._record_sources(conn, results, now)
            log_fetches(conn, [(r, (c.new, c.updated, c.unchanged)) for r, c in zip(results, counts, strict=True)], now)
        return counts

    def _store_entries(self, conn: Connection, result: SourceResult, now: dt.datetime) -> FetchCounts:
        """Store one source's entries and sightings (not its state: ``_record_sources``)."""
        unique: dict[str, Entry] = {}
        for entry in result.entries:
            unique[entry.id] = entry  # the last copy of a repeated id wins
        hashes = {eid: content_hash(e) for eid, e in unique.items()}
        known: dict[str, tuple[str, str, dt.datetime]] = {}
        for ids in chunked(list(unique), 500):
            query = select(t_entries.c.id, t_entries.c.source, t_entries.c.content_hash, t_entries.c.first_seen)
            for eid, owner, old_hash, first_seen in conn.execute(query.where(t_entries.c.id.in_(ids))):
                known[eid] = (owner, old_hash, first_seen)
        # Ids `digest prune` deleted: listed again, they are unchanged, never new.
        pruned = pruned_ids(conn, [eid for eid in unique if eid not in known])
        # Ids stored from another source: this source's earlier sightings of them.
        foreign = [eid for eid, (owner, _, _) in known.items() if owner != unique[eid].source]
        sighted = self._sighting_hashes(conn, result.source, foreign)
        rows: list[dict[str, Any]] = []
        sightings: list[dict[str, Any]] = []
        new = updated = 0
        listed: list[str] = []
        for eid, entry in unique.items():
            old = known.get(eid)
            if eid in pruned:
                continue
            if old is None:
                new += 1
                rows.append(_entry_row(entry, hashes[eid], now, now))
            elif old[0] != entry.source:
                seen = sighted.get(eid)
                if seen != hashes[eid]:
                    new, updated = (new + 1, updated) if seen is None else (new, updated + 1)
                    sightings.append(_sighting_row(entry, hashes[eid], now))
            elif old[1] != hashes[eid]:
                updated += 1
                rows.append(_entry_row(entry, hashes[eid], old[2], now))
            else:
                listed.append(eid)
        if rows:
            stmt = upsert_into(conn, t_entries)
            keep = {"id", "first_seen"}
            stmt = stmt.on_conflict_do_update(
                index_elements=[t_entries.c.id],
                set_={c.name: stmt.excluded[c.name] for c in t_entries.columns if c.name not in keep},
                where=t_entries.c.content_hash != stmt.excluded.content_hash,
            )
            for batch in chunked(rows, 2000):
                conn.execute(stmt, list(batch))
        mark_listed(conn, listed, now)  # a 304 lists nothing here: record_fetches re-stamps its listing
        unchanged_sightings = [e for e in foreign if sighted.get(e) == hashes[e]]
        self._record_sightings(conn, result.source, sightings, unchanged_sightings, now)
        return FetchCounts(new=new, updated=updated, unchanged=len(unique) - new - updated)

    def _sighting_hashes(self, conn: Connection, source: str, ids: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in chunked(ids, 500):
            query = select(t_sightings.c.entry_id, t_sightings.c.content_hash).where(
                t_sightings.c.source == source, t_sightings.c.entry_id.in_(chunk)
            )
            out.update((eid, digest) for eid, digest in conn.execute(query))
        return out

    def _record_sightings(
        self, conn: Connection, source: str, rows: list[dict[str, Any]], seen_again: list[str], now: dt.datetime
    ) -> None:
        """Insert or update changed sightings (keeping ``first_seen``); stamp ``last_seen`` on the rest."""
        if rows:
            stmt = upsert_into(conn, t_sightings)
            keep = {"entry_id", "source", "first_seen"}
            stmt = stmt.on_conflict_do_update(
                index_elements=[t_sightings.c.entry_id, t_sightings.c.source],
                set_={c.name: stmt.excluded[c.name] for c in t_sightings.columns if c.name not in keep},
            )
            for batch in chunked(rows, 2000):
                conn.execute(stmt, list(batch))
        for chunk in chunked(seen_again, 500):
            conn.execute(
                update(t_sightings)
                .where(t_sightings.c.source == source, t_sightings.c.entry_id.in_(chunk))
                .values(last_seen=now)
            )

    def _record_sources(self, conn: Connection, results: Sequence[SourceResult], now: dt.datetime) -> None:
        """Each source's new state: one upsert for all the failed ones, one for all that worked."""
        failed = [
            {"name": r.source, "failures": 1, "last_error": r.error, "last_fetch": now}
            for r in results
            if r.status in _FAILED
        ]
        if failed:
            stmt = upsert_into(conn, t_sources)
            stmt = stmt.on_conflict_do_update(
                index_elements=[t_sources.c.name],
                set_={
                    "failures": t_sources.c.failures + 1,
                    "last_error": stmt.excluded.last_error,
                    "last_fetch": stmt.excluded.last_fetch,
                },
            )
            conn.execute(stmt, failed)
        worked = [r for r in results if r.status not in _FAILED]
        # A result without a state (none is known yet) must not blank the etag: its own upsert.
        for group in ([r for r in worked if r.state is not None], [r for r in worked if r.state is None]):
            rows = []
            for r in group:
                values: dict[str, Any] = {"failures": 0, "last_ok": now, "last_error": None, "last_fetch": now}
                if r.state is not None:
                    values.update(etag=r.state.etag, last_modified=r.state.last_modified, item_count=r.state.item_count)
                rows.append({"name": r.source, **values})
            if rows:
                stmt = upsert_into(conn, t_sources)
                keys = [k for k in rows[0] if k != "name"]
                stmt = stmt.on_conflict_do_update(
                    index_elements=[t_sources.c.name], set_={k: stmt.excluded[k] for k in keys}
                )
                conn.execute(stmt, rows)

    def entries(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        source: str | None = None,
    ) -> list[Entry]:
        """Stored entries with ``since <= entry.when() < until``, by when, then id.

        Each comes with its sightings in ``Entry.also`` (by first seen, then
        source). ``source`` keeps the entries of that source, including those
        it only sighted.
        """
        query: Select[Any] = select(t_entries)
        if since is not None:
            query = query.where(t_entries.c.sort_at >= since)
        if until is not None:
            query = query.where(t_entries.c.sort_at < until)
        if source is not None:
            sighted = select(t_sightings.c.entry_id).where(t_sightings.c.source == source)
            query = query.where(or_(t_entries.c.source == source, t_entries.c.id.in_(sighted)))
        query = query.order_by(t_entries.c.sort_at, t_entries.c.id)
        with self._read() as conn:
            return read_entries(conn, query)

    def entries_version(self) -> str:
        """Changes whenever an entry or a sighting is added or updated: counts and latest changes."""
        with self._read() as conn:
            count, latest = conn.execute(
                select(func.count(), func.max(t_entries.c.updated_at)).select_from(t_entries)
            ).one()
            seen = conn.execute(select(func.count()).select_from(t_sightings)).scalar_one()
        return f"{count}:{latest.isoformat() if latest else '-'}:{seen}"

    def latest_entry(self) -> Entry | None:
        """The entry placed latest in time (``Entry.when``), or ``None`` when nothing is stored."""
        query: Select[Any] = select(t_entries).order_by(t_entries.c.sort_at.desc(), t_entries.c.id.desc()).limit(1)
        with self._read() as conn:
            found = read_entries(conn, query)
        return found[0] if found else None

    def entry_count(self) -> int:
        """How many entries are stored."""
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(t_entries)).scalar_one())
