"""``digest prune``: old ledgers become counts, long-unlisted entries go, their ids stay (SQLite and PostgreSQL).

Every test drives the store with an injected clock: ``now`` values a year and more apart.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import load_config
from digest.errors import ConfigError
from digest.models import Delivery, Entry, FetchStatus, Rendered, SourceResult
from digest.store import FetchCounts, IssueEntry, PruneCounts, Store, content_hash

T0 = dt.datetime(2018, 1, 15, 8, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
KEEP = dt.timedelta(days=400)


def entry(ident: str, source: str = "A", *, published: dt.datetime | None = None) -> Entry:
    return Entry(
        id=ident,
        source=source,
        title=f"Story {ident}",
        link=f"https://news.example/{ident}",
        published=published or dt.datetime(2016, 3, 1, tzinfo=dt.UTC),
    )


def fetched(source: str, *entries: Entry, status: FetchStatus = FetchStatus.OK) -> SourceResult:
    return SourceResult(source, status, entries=entries)


def prune(store: Store, now: dt.datetime) -> PruneCounts:
    return store.prune(now, keep_deliveries=KEEP, keep_entries=KEEP)


def send_issue(store: Store, key: str, emails: list[str], now: dt.datetime, carried: tuple[Entry, ...] = ()) -> None:
    """Freeze ``key`` carrying ``carried``, plan ``emails`` and send all but the last (marked failed for good)."""
    variant = Rendered(key, "all", ("T",), "Subject", "<p>hi</p>", "hi")
    marks = [IssueEntry(e.id, content_hash(e)) for e in carried]
    assert store.freeze_issue(key, "{}", [variant], now, entries=marks)
    store.plan_deliveries(key, [(e, "all") for e in emails], now)
    for email in emails[:-1]:
        assert store.claim(key, email, now)
        store.mark_sent(key, email, now + dt.timedelta(seconds=1))
    assert store.claim(key, emails[-1], now)
    store.mark_failed(key, emails[-1], now, permanent=True, code=550, error="no such user", next_attempt=None)


# --- the ledger -----------------------------------------------------------------------------


def test_a_finished_issue_is_compacted_after_keep_deliveries_and_still_reported(any_store: Store) -> None:
    emails = [f"r{i}@example.org" for i in range(5)]
    send_issue(any_store, "2018-W02", emails, T0)
    before = next(s for s in any_store.issue_summaries() if s.key == "2018-W02")
    # Not yet: finished 399 days ago.
    assert prune(any_store, T0 + KEEP - DAY) == PruneCounts()
    assert len(any_store.deliveries("2018-W02")) == 5
    assert prune(any_store, T0 + KEEP + DAY) == PruneCounts(issues=1, deliveries=5)
    assert any_store.deliveries("2018-W02") == []
    (after,) = any_store.issue_summaries()
    assert after.counts == before.counts == {"sent": 4, "failed-permanent": 1}
    assert (after.first_sent, after.last_sent, after.state) == (before.first_sent, before.last_sent, "partly failed")
    assert (before.compacted, after.compacted) == (False, True)
    report = any_store.issue_report("2018-W02")
    assert report is not None and report.by_variant == {"all": {"sent": 4, "failed-permanent": 1}}
    # A compacted issue is never planned again: nobody gets it twice.
    assert any_store.plan_deliveries("2018-W02", [("r0@example.org", "all")], T0 + 2 * KEEP) == 0
    assert any_store.deliveries("2018-W02") == []
    assert prune(any_store, T0 + 2 * KEEP) == PruneCounts()  # nothing left to do, counts kept once
    assert next(iter(any_store.issue_summaries())).counts == {"sent": 4, "failed-permanent": 1}


def test_an_unfinished_issue_is_never_compacted(any_store: Store) -> None:
    variant = Rendered("2018-W02", "all", ("T",), "S", "<p>x</p>", "x")
    any_store.freeze_issue("2018-W02", "{}", [variant], T0)
    any_store.plan_deliveries("2018-W02", [("a@example.org", "all"), ("b@example.org", "all")], T0)
    any_store.claim("2018-W02", "a@example.org", T0)
    any_store.mark_sent("2018-W02", "a@example.org", T0)
    assert prune(any_store, T0 + 3 * KEEP) == PruneCounts()
    assert any_store.delivery_counts("2018-W02")[Delivery.PENDING] == 1


# --- entries --------------------------------------------------------------------------------


def test_entries_unlisted_for_keep_entries_go_and_listed_ones_stay_whatever_their_date(any_store: Store) -> None:
    old, listed = entry("old"), entry("listed")  # both published in 2016
    any_store.record_fetch(fetched("A", old, listed), T0)
    # The source keeps listing "listed" (unchanged), and a 304 a year later lists it again.
    any_store.record_fetch(fetched("A", listed), T0 + 200 * DAY)
    any_store.record_fetch(fetched("A", status=FetchStatus.NOT_MODIFIED), T0 + 380 * DAY)
    # A failed fetch lists nothing, and stamps nothing.
    any_store.record_fetch(SourceResult("A", FetchStatus.FAILED, error="timeout"), T0 + 390 * DAY)
    assert prune(any_store, T0 + KEEP + DAY) == PruneCounts(entries=1)
    assert [e.id for e in any_store.entries()] == ["listed"]
    # Listed again, the pruned entry is unchanged, never new, and is not stored again.
    later = T0 + KEEP + 2 * DAY
    assert any_store.record_fetch(fetched("A", old, listed), later) == FetchCounts(unchanged=2)
    assert [e.id for e in any_store.entries()] == ["listed"]
    # Another source carrying the pruned id does not bring it back either.
    assert any_store.record_fetch(fetched("B", entry("old", "B")), later) == FetchCounts(unchanged=1)
    assert any_store.entry_count() == 1


def test_an_entry_another_source_still_lists_stays(any_store: Store) -> None:
    any_store.record_fetch(fetched("A", entry("shared")), T0)
    any_store.record_fetch(fetched("B", entry("shared", "B")), T0)
    any_store.record_fetch(fetched("B", entry("shared", "B")), T0 + 300 * DAY)
    assert prune(any_store, T0 + KEEP + DAY) == PruneCounts()
    assert any_store.record_fetch(fetched("B", entry("shared", "B")), T0 + 500 * DAY) == FetchCounts(unchanged=1)
    assert prune(any_store, T0 + 500 * DAY + KEEP + DAY) == PruneCounts(entries=1)
    assert any_store.entry_count() == 0


def test_an_entry_an_unfinished_issue_carries_stays_until_the_issue_is_done(any_store: Store) -> None:
    carried = entry("carried")
    any_store.record_fetch(fetched("A", carried), T0)
    variant = Rendered("2018-W02", "all", ("T",), "S", "<p>x</p>", "x")
    # Frozen, nobody planned yet (waiting for approval): unfinished.
    any_store.freeze_issue("2018-W02", "{}", [variant], T0, entries=[IssueEntry("carried", content_hash(carried))])
    assert prune(any_store, T0 + KEEP + DAY).entries == 0
    any_store.plan_deliveries("2018-W02", [("a@example.org", "all")], T0 + KEEP + DAY)
    assert prune(any_store, T0 + KEEP + 2 * DAY).entries == 0  # still pending
    any_store.claim("2018-W02", "a@example.org", T0 + KEEP + 2 * DAY)
    any_store.mark_sent("2018-W02", "a@example.org", T0 + KEEP + 2 * DAY)
    assert prune(any_store, T0 + KEEP + 3 * DAY).entries == 1
    assert any_store.entry_count() == 0


def test_prune_records_when_it_ran(any_store: Store) -> None:
    assert any_store.last_prune() is None
    prune(any_store, T0)
    prune(any_store, T0 + DAY)
    assert any_store.last_prune() == T0 + DAY


def test_prune_refuses_a_naive_clock(any_store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        prune(any_store, dt.datetime(2019, 1, 1))


# --- config and the command -------------------------------------------------------------------

BASE = '[digest]\ndatabase = "sqlite:///digest.db"\nsecret = "s3cret-s3cret-s3cret"\n'


def test_store_keep_settings_default_and_parse(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(BASE, encoding="utf-8")
    assert load_config(path).store.keep_deliveries == KEEP == load_config(path).store.keep_entries
    path.write_text(BASE + '[store]\nkeep_deliveries = "2w"\nkeep_entries = "730d"\n', encoding="utf-8")
    config = load_config(path)
    assert (config.store.keep_deliveries, config.store.keep_entries) == (14 * DAY, 730 * DAY)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("keep_deliveries = 400", "store.keep_deliveries"),
        ('keep_deliveries = "-400d"', "store.keep_deliveries"),
        ('keep_entries = "0d"', "store.keep_entries"),
        ('keep_entries = "1h"', "at least a day"),
        ('keep_entries = "forever"', "store.keep_entries"),
        ('keep_entries = "9999999w"', "ten years"),
        ('keep_everything = "1d"', "keep_everything"),
    ],
)
def test_store_keep_settings_refuse_hostile_values(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(BASE + f"[store]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        load_config(path)


def test_digest_prune_command_reports_json(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(BASE, encoding="utf-8")
    with Store.open(f"sqlite:///{tmp_path / 'digest.db'}") as store:
        store.record_fetch(fetched("A", entry("ancient")), T0)  # 2018: far longer ago than 400 days
    done = CliRunner().invoke(cli, ["--config", str(path), "prune", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"command": "prune", "issues": 0, "deliveries": 0, "entries": 1}
    with Store.open(f"sqlite:///{tmp_path / 'digest.db'}") as store:
        assert store.entry_count() == 0 and store.last_prune() is not None


def test_run_prunes_once_a_day(tmp_path: Path) -> None:
    from digest import pipeline

    path = tmp_path / "digest.toml"
    path.write_text(BASE, encoding="utf-8")
    config = load_config(path)
    with pipeline.open_store(config) as store:
        store.record_fetch(fetched("A", entry("ancient")), T0)
        now = T0 + KEEP + DAY
        assert pipeline.prune_if_due(config, store, now) == PruneCounts(entries=1)
        store.record_fetch(fetched("B", entry("other", "B")), T0)
        # Within a day of the last prune: not due.
        assert pipeline.prune_if_due(config, store, now + DAY - dt.timedelta(seconds=1)) is None
        assert store.entry_count() == 1
        assert pipeline.prune_if_due(config, store, now + DAY) == PruneCounts(entries=1)


def test_digest_run_prunes_after_its_send_and_not_again_that_day(tmp_path: Path) -> None:
    from digest import pipeline

    path = tmp_path / "digest.toml"
    path.write_text(BASE, encoding="utf-8")
    config = load_config(path)
    now = T0 + KEEP + DAY
    with pipeline.open_store(config) as store:
        store.record_fetch(fetched("A", entry("ancient")), T0)
        first = pipeline.run(config, store, clock=lambda: now)
        assert first.pruned == PruneCounts(entries=1) and store.last_prune() == now
        again = pipeline.run(config, store, clock=lambda: now + dt.timedelta(hours=23))
        assert again.pruned is None and store.last_prune() == now


def test_migration_11_dates_old_entries_by_their_source_s_last_good_fetch(store_url: str) -> None:
    from sqlalchemy import insert, select

    from digest.store import MIGRATIONS
    from digest.store.migrations import entries_v1
    from digest.store.schema import entries, sources

    row = {
        "source": "A",
        "title": "t",
        "summary": "",
        "content": "",
        "authors": "[]",
        "tags": "[]",
        "first_seen": T0,
        "updated_at": T0,
        "sort_at": T0,
        "content_hash": "h",
    }
    with Store.open(store_url, now=T0, migrations=MIGRATIONS[:-1]) as old, old._write() as conn:
        conn.execute(insert(entries_v1), [{**row, "id": "a"}, {**row, "id": "b", "source": "gone"}])
        conn.execute(insert(sources).values(name="A", failures=0, last_ok=T0 + 30 * DAY))
    with Store.open(store_url, now=T0) as store:
        assert 11 in store.applied_migrations()
        with store._read() as conn:
            seen = dict(conn.execute(select(entries.c.id, entries.c.last_seen)).all())
    # Its source's last good fetch (a later bound than the truth), else its own last change.
    assert seen == {"a": T0 + 30 * DAY, "b": T0}
