"""Recording a fetch: batches of sources in one transaction, written while the others are fetched.

``Recorder`` (the store-writer thread of ``fetch_all``) and ``record_batch``
against real stores (SQLite and PostgreSQL): every source gets its state and
its fetch-log row whether it came alone or in a batch, a source whose values
the store refuses fails alone, and which source owns an entry two sources
carry follows the config's order, not the order the answers came in.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from digest.models import Entry, FetchStatus, SourceResult, SourceState
from digest.pipeline.gather import FLUSH_ENTRIES, Recorder, record_batch
from digest.store import FetchCounts, Store
from digest.store.fetchlog import KEEP
from digest.store.schema import entries as t_entries

T0 = dt.datetime(2018, 1, 15, 8, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def entry(ident: str, source: str, published: dt.datetime = T0) -> Entry:
    return Entry(ident, source, f"Title {ident}", link=f"https://example.org/{ident}", published=published)


def ok(source: str, *entries: Entry, etag: str = '"1"') -> SourceResult:
    state = SourceState(etag=etag, item_count=len(entries))
    return SourceResult(source, FetchStatus.OK, entries=entries, state=state, elapsed=0.2)


def not_modified(source: str, etag: str = '"1"') -> SourceResult:
    return SourceResult(source, FetchStatus.NOT_MODIFIED, state=SourceState(etag=etag, item_count=1), elapsed=0.2)


def last_seen(store: Store) -> dict[str, dt.datetime]:
    with store._read() as conn:
        return {str(i): when for i, when in conn.execute(select(t_entries.c.id, t_entries.c.last_seen))}


def test_a_batch_of_304s_records_every_source_its_state_and_its_fetch_log_row(any_store: Store) -> None:
    names = [f"feed {i}" for i in range(12)]
    any_store.record_fetches([ok(n, entry(f"e{i}", n), etag=f'"{i}"') for i, n in enumerate(names)], T0)

    lines = record_batch(any_store, [not_modified(n, f'"{i}"') for i, n in enumerate(names)], T0 + HOUR)

    assert [line.result.status for line in lines] == [FetchStatus.NOT_MODIFIED] * 12
    assert [line.counts for line in lines] == [FetchCounts()] * 12
    states = any_store.source_states()
    assert [states[n].etag for n in names] == [f'"{i}"' for i in range(12)]
    reports = any_store.source_reports(names)
    assert [[h.status for h in r.history] for r in reports] == [["not_modified", "ok"]] * 12
    assert all(r.last_ok == T0 + HOUR and r.failures == 0 for r in reports)
    # A 304 lists its previous listing again: every entry is stamped seen at the 304.
    assert set(last_seen(any_store).values()) == {T0 + HOUR}


def test_a_304_restamps_only_what_its_source_listed_at_its_last_good_fetch(any_store: Store) -> None:
    any_store.record_fetches([ok("A", entry("a-old", "A"), entry("a-kept", "A")), ok("B", entry("b", "B"))], T0)
    # A drops a-old from its listing; B fails once (its last good fetch stays T0).
    any_store.record_fetches(
        [ok("A", entry("a-kept", "A")), SourceResult("B", FetchStatus.FAILED, error="HTTP 500")], T0 + HOUR
    )

    record_batch(any_store, [not_modified("A"), not_modified("B")], T0 + 2 * HOUR)

    assert last_seen(any_store) == {"a-old": T0, "a-kept": T0 + 2 * HOUR, "b": T0 + 2 * HOUR}


def test_a_source_the_store_refuses_fails_alone_among_304s(any_store: Store) -> None:
    any_store.record_fetches([ok("A", entry("a", "A")), ok("C", entry("c", "C"))], T0)
    far = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone(-dt.timedelta(hours=23, minutes=59)))
    bad = ok("B", entry("b", "B", published=far))

    lines = record_batch(any_store, [not_modified("A"), bad, not_modified("C")], T0 + HOUR)

    nm, failed = FetchStatus.NOT_MODIFIED, FetchStatus.FAILED
    assert [line.result.status for line in lines] == [nm, failed, nm]
    assert lines[1].result.error.startswith("could not be stored: ")
    reports = {r.name: r for r in any_store.source_reports(["A", "B", "C"])}
    assert [h.status for h in reports["A"].history] == ["not_modified", "ok"]
    assert [h.status for h in reports["C"].history] == ["not_modified", "ok"]
    assert [h.status for h in reports["B"].history] == ["failed"] and reports["B"].failures == 1
    assert sorted(e.id for e in any_store.entries()) == ["a", "c"]


def test_a_batch_keeps_only_the_newest_fetch_log_rows_of_each_source(any_store: Store) -> None:
    any_store.record_fetches([ok("A", entry("a", "A")), ok("B", entry("b", "B"))], T0)
    for n in range(1, KEEP + 5):
        record_batch(any_store, [not_modified("A"), not_modified("B")], T0 + n * HOUR)

    for report in any_store.source_reports(["A", "B"], history=KEEP + 10):
        assert len(report.history) == KEEP
        assert report.history[0].fetched_at == T0 + (KEEP + 4) * HOUR
        assert report.history[-1].fetched_at == T0 + 5 * HOUR


def test_the_first_source_in_config_order_owns_a_shared_entry_whoever_answers_first(store: Store) -> None:
    shared_a, shared_b = entry("shared", "A"), entry("shared", "B")
    many = [entry(f"b{i}", "B") for i in range(FLUSH_ENTRIES)]  # enough for the writer to commit at once
    first, second = ok("A", shared_a), ok("B", shared_b, *many)
    with Recorder(store, T0, ["A", "B", "C"]) as recorder:
        recorder.add(not_modified("C"))  # a result without entries waits for nobody
        recorder.add(second)  # B's answer comes in before A's: held until A's is in
        deadline = time.monotonic() + 30
        while not store.source_reports(["C"])[0].history:  # the writer has committed that batch
            assert time.monotonic() < deadline, "the writer never committed C"
            time.sleep(0.01)
        assert store.entry_count() == 0  # B was held back
        recorder.add(first)
    lines = recorder.lines_for([first, second])

    assert [line.counts for line in lines] == [FetchCounts(new=1), FetchCounts(new=1 + FLUSH_ENTRIES)]
    [stored] = [e for e in store.entries() if e.id == "shared"]
    assert stored.source == "A" and [s.source for s in stored.also] == ["B"]


def test_the_recorder_hands_the_stores_error_to_the_fetching_thread(store: Store) -> None:
    naive = dt.datetime(2018, 1, 15, 8)
    result = ok("A", entry("a", "A"))
    with pytest.raises(ValueError, match="timezone-aware"), Recorder(store, naive, ["A"]) as recorder:
        recorder.add(result)
    assert store.entry_count() == 0


def test_the_recorder_stores_what_came_in_when_the_fetching_stops_early(store: Store) -> None:
    a, c = ok("A", entry("a", "A")), ok("C", entry("c", "C"))
    with pytest.raises(KeyboardInterrupt), Recorder(store, T0, ["A", "B", "C"]) as recorder:
        recorder.add(c)  # held: B never comes in
        recorder.add(a)
        raise KeyboardInterrupt
    assert sorted(e.id for e in store.entries()) == ["a", "c"]


def test_digest_fetch_loads_neither_the_parsers_nor_the_renderer_nor_the_sender() -> None:
    # A fetch whose sources all answer 304 parses nothing; importing what it runs must not load them.
    probe = (
        "import sys, digest.cli, digest.cli.gather\n"
        "from digest import pipeline\n"
        "pipeline.fetch_all, pipeline.open_store\n"
        "heavy = ('digest.render', 'digest.compose', 'digest.send', 'premailer', 'feedparser', 'digest.sources.feed')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_pipeline_run_stays_the_function_once_its_module_is_imported() -> None:
    probe = (
        "import digest.pipeline.run, digest.pipeline as p; print(callable(p.run), p.run.__module__, p.prune.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "digest.pipeline.run", "prune"]
