"""The fetch history of each source, and the per-source report built from it.

``record_fetch`` (and ``record_fetches``, for a batch of sources) appends one
row per fetch inside the transaction that stores its entries (through
``log_fetches``); only the newest ``KEEP`` rows of a source are kept, so the
table grows with the number of sources, not with time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select

from digest.models import SourceResult
from digest.store.base import StoreBase, chunked
from digest.store.schema import entries as t_entries
from digest.store.schema import fetch_log as t_log
from digest.store.schema import sources as t_sources

#: Fetches remembered per source (the dashboard shows the last 12).
KEEP = 50


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """One fetch of one source."""

    fetched_at: dt.datetime
    status: str
    new: int
    updated: int
    unchanged: int
    items: int | None
    elapsed: float
    error: str


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What the store knows of one source: its last fetches, counts and failures."""

    name: str
    last_fetch: dt.datetime | None
    last_ok: dt.datetime | None
    last_status: str | None
    last_error: str
    failures: int
    items_last_time: int | None
    entries_stored: int
    history: tuple[FetchRecord, ...]  # newest first

    def alert(self, after: int) -> bool:
        """Whether the source has failed ``after`` (``[fetch] alert_after``) runs in a row or more."""
        return self.failures >= after


def log_fetches(
    conn: Connection, logged: Sequence[tuple[SourceResult, tuple[int, int, int]]], now: dt.datetime
) -> None:
    """Append each result to its source's history inside the caller's transaction; trim old rows.

    One insert for all the rows, one trim for all the sources.
    """
    if not logged:
        return
    rows = [
        {
            "source": result.source,
            "fetched_at": now,
            "status": str(result.status),
            "new": new,
            "updated": updated,
            "unchanged": unchanged,
            "items": result.state.item_count if result.state is not None else None,
            "elapsed": float(result.elapsed),
            "error": result.error or None,
        }
        for result, (new, updated, unchanged) in logged
    ]
    conn.execute(insert(t_log), rows)
    for names in chunked(sorted({result.source for result, _ in logged}), 500):
        newest_first = func.row_number().over(partition_by=t_log.c.source, order_by=t_log.c.id.desc())
        ranked = select(t_log.c.id, newest_first.label("n")).where(t_log.c.source.in_(names)).subquery()
        conn.execute(delete(t_log).where(t_log.c.id.in_(select(ranked.c.id).where(ranked.c.n > KEEP))))


class FetchLogMixin(StoreBase):
    """Reads of the fetch history."""

    def source_reports(self, names: list[str], history: int = 12) -> list[SourceReport]:
        """One report per name, in the given order (a never-fetched source has empty fields)."""
        with self._read() as conn:
            state = {r.name: r for r in conn.execute(select(t_sources))}
            counted = conn.execute(select(t_entries.c.source, func.count()).group_by(t_entries.c.source))
            stored = {str(name): int(n) for name, n in counted}
            logs: dict[str, list[FetchRecord]] = {}
            query = select(t_log).order_by(t_log.c.source, t_log.c.id.desc())
            for row in conn.execute(query):
                rows = logs.setdefault(row.source, [])
                if len(rows) < history:
                    rows.append(
                        FetchRecord(
                            row.fetched_at,
                            row.status,
                            row.new,
                            row.updated,
                            row.unchanged,
                            row.items,
                            row.elapsed,
                            row.error or "",
                        )
                    )
        out = []
        for name in names:
            s = state.get(name)
            hist = tuple(logs.get(name, ()))
            last_status = hist[0].status if hist else None
            if last_status is None and s is not None:
                last_status = "failed" if s.failures else "ok"
            out.append(
                SourceReport(
                    name=name,
                    last_fetch=s.last_fetch if s else None,
                    last_ok=s.last_ok if s else None,
                    last_status=hist[0].status
                    if hist
                    else (None if s is None else "ok" if not s.failures else "failed"),
                    last_error=(s.last_error or "") if s else "",
                    failures=s.failures if s else 0,
                    items_last_time=s.item_count if s else None,
                    entries_stored=int(stored.get(name, 0)),
                    history=hist,
                )
            )
        return out
