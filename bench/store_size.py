"""The store's size after a year of weekly issues, with and without ``digest prune``.

``simulate`` drives a real SQLite store with an injected clock through
``weeks`` weekly rounds: a source lists its 50 newest entries (50 new each
week, the older ones drop out of the listing), an issue of one 40 KB variant
is frozen carrying that week's entries, ``subscribers`` rows are planned and
marked sent; with ``keep`` set, ``Store.prune`` runs after every round with
that keep for both the ledger and the entries. The size is the file's after
``VACUUM`` (SQLite reuses freed pages but does not shrink the file by itself).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

from sqlalchemy import text

from digest.models import Entry, FetchStatus, Rendered, SourceResult
from digest.store import IssueEntry, Store, content_hash
from digest.store.schema import utc_text

T0 = dt.datetime(2018, 1, 8, 6, tzinfo=dt.UTC)
WEEK = dt.timedelta(weeks=1)
_HTML = "<p>" + "x" * 40_000 + "</p>"


def _entries(week: int) -> tuple[Entry, ...]:
    return tuple(
        Entry(
            id=f"https://example.org/sim/{week}/{i}",
            source="Sim",
            title=f"Story {week}-{i}",
            link=f"https://example.org/sim/{week}/{i}",
            summary="word " * 60,
            published=T0 + week * WEEK + dt.timedelta(minutes=i),
        )
        for i in range(50)
    )


def simulate(path: Path, *, weeks: int, subscribers: int, keep: dt.timedelta | None) -> dict[str, float]:
    """Run the weeks into a fresh SQLite file; return its size and what is left in it."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    emails = [f"reader{i:07d}@example.org" for i in range(subscribers)]
    start = time.perf_counter()
    prune_s = 0.0
    with Store.open(f"sqlite:///{path}", now=T0) as store:
        for w in range(weeks):
            now = T0 + w * WEEK
            listed = _entries(w)
            store.record_fetch(SourceResult("Sim", FetchStatus.OK, entries=listed), now)
            key = f"sim-{w:03d}"
            variant = Rendered(key, "all", ("T",), f"Issue {w}", _HTML, "text " * 2000)
            store.freeze_issue(key, "{}", [variant], now, entries=[IssueEntry(e.id, content_hash(e)) for e in listed])
            store.plan_deliveries(key, [(e, "all") for e in emails], now)
            sent = now + dt.timedelta(hours=1)
            with store._write() as conn:  # the sender's outcome, in bulk: every row sent
                conn.execute(
                    text("UPDATE deliveries SET state = 'sent', attempts = 1, updated_at = :t WHERE issue_key = :k"),
                    {"t": utc_text(sent), "k": key},
                )
            if keep is not None:
                t = time.perf_counter()
                store.prune(sent + dt.timedelta(days=1), keep_deliveries=keep, keep_entries=keep)
                prune_s += time.perf_counter() - t
        with store._read() as conn:
            rows = conn.execute(text("SELECT count(*) FROM deliveries")).scalar_one()
            entries = conn.execute(text("SELECT count(*) FROM entries")).scalar_one()
    elapsed = time.perf_counter() - start
    vacuum = sqlite3.connect(path, isolation_level=None)
    vacuum.execute("VACUUM")
    vacuum.close()
    return {
        "mb": path.stat().st_size / 1e6,
        "ledger_rows": float(rows),
        "entries": float(entries),
        "elapsed_s": elapsed,
        "prune_s": prune_s,
    }
