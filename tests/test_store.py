"""Store: migrations, entries, source state, frozen issues, subscribers' status, locks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, inspect, text

from digest.errors import StoreError
from digest.models import (
    Author,
    Entry,
    FetchStatus,
    Rendered,
    SourceResult,
    SourceState,
    SubscriberStatus,
)
from digest.store import MIGRATIONS, FetchCounts, Migration, Store

UTC = dt.UTC
NOW = dt.datetime(2018, 1, 10, 9, 30, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def entry(eid: str, **kw: object) -> Entry:
    fields: dict[str, object] = {"source": "cyber", "title": f"Title {eid}", "link": f"https://e.org/{eid}"}
    fields.update(kw)
    return Entry(id=eid, **fields)  # type: ignore[arg-type]


def ok(*entries: Entry, etag: str | None = "e1", count: int | None = None) -> SourceResult:
    state = SourceState(etag=etag, last_modified="Tue, 09 Jan 2018 00:00:00 GMT", item_count=count)
    return SourceResult("cyber", FetchStatus.OK, entries, state)


def migration_rows(url: str) -> list[tuple[int, str, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT number, name, applied_at FROM migrations ORDER BY number"))
            return [tuple(r) for r in rows]  # type: ignore[misc]
    finally:
        engine.dispose()


# --- migrations -----------------------------------------------------------------------------------


def test_open_migrates_and_records_each_number(store_url: str) -> None:
    Store.open(store_url, now=NOW).close()
    rows = migration_rows(store_url)
    assert [r[0] for r in rows] == [m.number for m in MIGRATIONS]
    assert rows[0][2] == "2018-01-10T09:30:00.000000+00:00"
    engine = create_engine(store_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"entries", "sources", "issues", "variants", "deliveries", "subscriber_status", "locks"} <= tables


def test_reopen_applies_nothing_and_keeps_data(store_url: str) -> None:
    with Store.open(store_url, now=NOW) as first:
        first.record_fetch(ok(entry("a")), NOW)
    before = migration_rows(store_url)
    with Store.open(store_url, now=NOW + dt.timedelta(days=3)) as again:
        assert again.entry_count() == 1
        assert [e.id for e in again.entries()] == ["a"]
    assert migration_rows(store_url) == before


def test_concurrent_first_opens_migrate_once(store_url: str) -> None:
    opened: list[Store] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        try:
            start.wait()
            opened.append(Store.open(store_url, now=NOW))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in opened:
        s.close()
    assert errors == []
    assert [r[0] for r in migration_rows(store_url)] == [m.number for m in MIGRATIONS]


def test_a_failing_migration_leaves_no_trace(store_url: str) -> None:
    Store.open(store_url, now=NOW).close()

    def broken(conn: object) -> None:
        from sqlalchemy import Connection

        assert isinstance(conn, Connection)
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(text("SELECT * FROM no_such_table"))

    steps = (*MIGRATIONS, Migration(MIGRATIONS[-1].number + 1, "broken", broken))
    with pytest.raises(StoreError, match=r"no_such_table|does not exist"):
        Store.open(store_url, now=NOW, migrations=steps)
    assert [r[0] for r in migration_rows(store_url)] == [m.number for m in MIGRATIONS]
    engine = create_engine(store_url)
    assert "half_done" not in inspect(engine).get_table_names()
    engine.dispose()


def test_sqlite_connections_use_wal_and_foreign_keys(store: Store, tmp_path: Path) -> None:
    with store._read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    assert store.label == str(tmp_path / "digest.db")


# --- entries and sources --------------------------------------------------------------------------


def test_record_fetch_twice_adds_nothing(any_store: Store) -> None:
    result = ok(entry("a"), entry("b"), count=2)
    assert any_store.record_fetch(result, NOW) == FetchCounts(new=2, updated=0, unchanged=0)
    later = NOW + dt.timedelta(hours=1)
    assert any_store.record_fetch(result, later) == FetchCounts(new=0, updated=0, unchanged=2)
    assert any_store.entry_count() == 2
    assert {e.first_seen for e in any_store.entries()} == {NOW}


def test_changed_content_updates_in_place(any_store: Store) -> None:
    any_store.record_fetch(ok(entry("a", summary="old"), entry("b")), NOW)
    version = any_store.entries_version()
    any_store.record_fetch(ok(entry("a", summary="old"), entry("b")), NOW + dt.timedelta(hours=1))
    assert any_store.entries_version() == version  # nothing changed, nothing to rebuild
    changed = entry("a", summary="new words", title="Better title", tags=("policy",))
    later = NOW + dt.timedelta(days=1)
    counts = any_store.record_fetch(ok(changed, entry("b")), later)
    assert counts == FetchCounts(new=0, updated=1, unchanged=1)
    assert any_store.entry_count() == 2
    (a,) = any_store.entries(source="cyber", until=NOW + dt.timedelta(seconds=1))[:1]
    assert (a.id, a.title, a.summary, a.tags) == ("a", "Better title", "new words", ("policy",))
    assert a.first_seen == NOW  # kept from the first sighting
    assert any_store.entries_version() != version


def test_entries_round_trip_exactly(any_store: Store) -> None:
    published = dt.datetime(2018, 1, 9, 8, 15, 30, 123456, tzinfo=SHANGHAI)
    original = Entry(
        id="x1",
        source="cyber",
        title="Über «quotes» and 中文",
        link=None,
        summary="plain text",
        content="<p>html</p>",
        authors=(Author("Ann Lee", "Tsinghua University"), Author("Bo")),
        published=published,
        tags=("a", "b c"),
        title_derived=True,
    )
    any_store.record_fetch(ok(original), NOW)
    (back,) = any_store.entries()
    assert back == Entry(**{**{f: getattr(original, f) for f in original.__slots__}, "first_seen": NOW})
    assert back.published is not None
    assert back.published.isoformat() == "2018-01-09T08:15:30.123456+08:00"
    assert back.published.utcoffset() == dt.timedelta(hours=8)
    assert back.first_seen is not None and back.first_seen.utcoffset() == dt.timedelta(0)


def test_entries_filter_by_when_and_source(any_store: Store) -> None:
    monday = dt.datetime(2018, 1, 8, tzinfo=SHANGHAI)
    any_store.record_fetch(
        ok(
            entry("early", published=monday - dt.timedelta(seconds=1)),
            entry("start", published=monday),
            entry("mid", published=monday + dt.timedelta(days=3)),
            entry("end", published=monday + dt.timedelta(days=7)),
        ),
        NOW,
    )
    # No published date: placed by first_seen (NOW, Wednesday 17:30 in Shanghai).
    any_store.record_fetch(
        SourceResult("other", FetchStatus.OK, (entry("undated", source="other"),), SourceState()), NOW
    )
    week = any_store.entries(since=monday, until=monday + dt.timedelta(days=7))
    assert [e.id for e in week] == ["start", "undated", "mid"]
    assert [e.id for e in any_store.entries(since=monday.astimezone(UTC), source="cyber")] == [
        "start",
        "mid",
        "end",
    ]
    assert [e.id for e in any_store.entries(until=monday)] == ["early"]
    assert [e.id for e in any_store.entries(source="other")] == ["undated"]


def test_entries_with_equal_when_are_ordered_by_id(any_store: Store) -> None:
    same = dt.datetime(2018, 1, 9, tzinfo=UTC)
    any_store.record_fetch(ok(entry("b", published=same), entry("a", published=same), entry("c")), NOW)
    assert [e.id for e in any_store.entries()] == ["a", "b", "c"]


def test_naive_datetimes_are_refused(any_store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        any_store.entries(since=dt.datetime(2018, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        any_store.record_fetch(ok(entry("a")), dt.datetime(2018, 1, 1))
    assert any_store.entry_count() == 0


def test_source_state_is_stored_and_failures_keep_the_etag(any_store: Store) -> None:
    any_store.record_fetch(ok(entry("a"), etag='"v1"', count=1), NOW)
    assert any_store.source_states()["cyber"] == SourceState(
        etag='"v1"', last_modified="Tue, 09 Jan 2018 00:00:00 GMT", item_count=1, failures=0
    )
    for status in (FetchStatus.FAILED, FetchStatus.BROKEN):
        counts = any_store.record_fetch(SourceResult("cyber", status, error="HTTP 503"), NOW)
        assert counts == FetchCounts(0, 0, 0)
    state = any_store.source_states()["cyber"]
    assert (state.etag, state.item_count, state.failures) == ('"v1"', 1, 2)
    any_store.record_fetch(SourceResult("cyber", FetchStatus.NOT_MODIFIED, state=state), NOW)
    assert any_store.source_states()["cyber"].failures == 0
    assert any_store.source_states()["cyber"].etag == '"v1"'


def test_first_failure_of_an_unknown_source_counts_one(any_store: Store) -> None:
    any_store.record_fetch(SourceResult("new", FetchStatus.FAILED, error="timeout"), NOW)
    assert any_store.source_states() == {"new": SourceState(failures=1)}


# --- frozen issues --------------------------------------------------------------------------------


def rendered(key: str, variant: str, subject: str) -> Rendered:
    return Rendered(key, variant, ("Policy", "Other"), subject, "<p>html ✓</p>", "text ✓")


def test_freeze_issue_keeps_the_first(any_store: Store) -> None:
    first = [rendered("2018-W02", "all", "First"), rendered("2018-W02", "policy", "First P")]
    assert any_store.freeze_issue("2018-W02", '{"n": 1}', first, NOW) is True
    again = [rendered("2018-W02", "all", "Second")]
    assert any_store.freeze_issue("2018-W02", '{"n": 2}', again, NOW + dt.timedelta(hours=1)) is False
    frozen = any_store.frozen_issue("2018-W02")
    assert frozen is not None
    assert (frozen.key, frozen.payload, frozen.frozen_at) == ("2018-W02", '{"n": 1}', NOW)
    assert frozen.variants == tuple(first)
    assert frozen.variant("policy") == first[1]
    assert any_store.frozen_issue("2018-W03") is None


def test_add_variants_keeps_existing_and_appends_new(any_store: Store) -> None:
    first = [rendered("2018-W02", "all", "First")]
    any_store.freeze_issue("2018-W02", "{}", first, NOW)
    late = [rendered("2018-W02", "all", "Changed"), rendered("2018-W02", "policy", "Late")]
    assert any_store.add_variants("2018-W02", late) == 1
    assert any_store.add_variants("2018-W02", late) == 0
    frozen = any_store.frozen_issue("2018-W02")
    assert frozen is not None
    assert frozen.variants == (first[0], late[1])
    with pytest.raises(ValueError, match="not frozen"):
        any_store.add_variants("2018-W09", late)


# --- subscribers' status --------------------------------------------------------------------------


def test_unsubscribe_wins_over_reactivation(any_store: Store) -> None:
    assert any_store.set_status("Ann@Example.org", SubscriberStatus.ACTIVE, NOW, "import") is True
    assert any_store.set_status("ann@example.org", SubscriberStatus.ACTIVE, NOW, "import") is False
    assert any_store.set_status(" ANN@example.org", SubscriberStatus.UNSUBSCRIBED, NOW, "link") is True
    assert any_store.set_status("ann@example.org", SubscriberStatus.ACTIVE, NOW, "import") is False
    assert any_store.set_status("ann@example.org", SubscriberStatus.BOUNCED, NOW, "bounce") is False
    assert any_store.unsubscribed() == {"ann@example.org"}
    assert any_store.set_status("ann@example.org", SubscriberStatus.ACTIVE, NOW, "cli", force=True) is True
    assert any_store.unsubscribed() == set()


def test_subscriber_status_lists_only_stored_addresses(any_store: Store) -> None:
    any_store.set_status("a@x.org", SubscriberStatus.BOUNCED, NOW, "bounce")
    any_store.set_status("b@x.org", SubscriberStatus.UNSUBSCRIBED, NOW, "link")
    assert any_store.subscriber_status(["A@X.org", "c@x.org"]) == {"a@x.org": SubscriberStatus.BOUNCED}
    assert any_store.subscriber_status() == {
        "a@x.org": SubscriberStatus.BOUNCED,
        "b@x.org": SubscriberStatus.UNSUBSCRIBED,
    }
    # Bounced is not sticky: the address may be re-activated.
    assert any_store.set_status("a@x.org", SubscriberStatus.ACTIVE, NOW, "cli") is True


def test_status_changes_name_the_addresses_changed_since_a_mark(any_store: Store) -> None:
    assert any_store.status_mark() == 0 and any_store.status_changes(0) == (0, set())
    any_store.set_status("a@x.org", SubscriberStatus.ACTIVE, NOW, "import")
    mark = any_store.status_mark()
    assert any_store.status_changes(mark) == (mark, set())
    any_store.set_status("B@X.org", SubscriberStatus.UNSUBSCRIBED, NOW, "link")
    any_store.set_status("c@x.org", SubscriberStatus.BOUNCED, NOW, "bounce")
    # Refused (leaving wins): no change, no history.
    assert any_store.set_status("b@x.org", SubscriberStatus.ACTIVE, NOW, "import") is False
    after, changed = any_store.status_changes(mark)
    assert changed == {"b@x.org", "c@x.org"} and after > mark
    any_store.reactivate("b@x.org", NOW, "asked by phone")
    assert any_store.status_changes(after)[1] == {"b@x.org"}
    assert any_store.status_changes(any_store.status_mark()) == (any_store.status_mark(), set())
    # Only the inactive ones, as the database chose them.
    assert any_store.inactive_statuses() == {"c@x.org": SubscriberStatus.BOUNCED}


# --- locks ----------------------------------------------------------------------------------------


def test_lock_is_exclusive_and_expires(any_store: Store) -> None:
    ttl = dt.timedelta(minutes=10)
    assert any_store.acquire_lock("send", "run-1", NOW, ttl) is True
    assert any_store.acquire_lock("send", "run-2", NOW + dt.timedelta(minutes=5), ttl) is False
    assert any_store.acquire_lock("fetch", "run-2", NOW, ttl) is True  # another name is another lock
    assert any_store.acquire_lock("send", "run-1", NOW + dt.timedelta(minutes=5), ttl) is True  # renews
    assert any_store.lock_holder("send", NOW + dt.timedelta(minutes=14)) == "run-1"
    assert any_store.acquire_lock("send", "run-2", NOW + dt.timedelta(minutes=15), ttl) is True
    assert any_store.lock_holder("send", NOW + dt.timedelta(minutes=15)) == "run-2"
    with pytest.raises(StoreError, match="no longer held by run-1"):
        any_store.refresh_lock("send", "run-1", NOW + dt.timedelta(minutes=16))


def test_refresh_extends_and_release_frees(any_store: Store) -> None:
    ttl = dt.timedelta(minutes=10)
    assert any_store.acquire_lock("send", "run-1", NOW, ttl)
    any_store.refresh_lock("send", "run-1", NOW + dt.timedelta(minutes=9))
    assert any_store.acquire_lock("send", "run-2", NOW + dt.timedelta(minutes=12), ttl) is False
    any_store.release_lock("send", "run-2")  # not the holder: nothing happens
    assert any_store.lock_holder("send", NOW + dt.timedelta(minutes=12)) == "run-1"
    any_store.release_lock("send", "run-1")
    assert any_store.lock_holder("send", NOW) is None
    assert any_store.acquire_lock("send", "run-2", NOW, ttl) is True


def test_lock_holds_across_store_objects(store_url: str) -> None:
    with Store.open(store_url) as one, Store.open(store_url) as two:
        assert one.acquire_lock("send", "proc-1", NOW, dt.timedelta(minutes=1))
        assert not two.acquire_lock("send", "proc-2", NOW, dt.timedelta(minutes=1))


# --- migration 4: placeholder tokens per frozen variant -------------------------------------------

OLD_HTML = "<p>DIGESTxGREETINGx7f3a</p><p>as DIGESTxEMAILx7f3a.</p><a href='DIGESTxUNSUBx7f3a'>Unsubscribe</a>"


def _freeze_the_old_way(url: str, *, tokens: str | None = None) -> None:
    """An issue frozen by a store at migration 1: the variants row has no tokens column."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO issues (key, payload, frozen_at) VALUES ('2018-W01', '{}', :at)"),
                {"at": "2018-01-08T00:00:00.000000+00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO variants (issue_key, variant, position, themes, subject, html, text) "
                    "VALUES ('2018-W01', 'all', 0, '[]', 'Weekly for DIGESTxNAMEx7f3a', :html, 'DIGESTxGREETINGx7f3a')"
                ),
                {"html": OLD_HTML},
            )
            if tokens is not None:
                conn.execute(text("UPDATE variants SET tokens = :t"), {"t": tokens})
    finally:
        engine.dispose()


def test_variants_frozen_before_migration_4_keep_their_fixed_tokens(store_url: str) -> None:
    from digest import placeholders

    Store.open(store_url, now=NOW, migrations=MIGRATIONS[:1]).close()
    _freeze_the_old_way(store_url)
    with Store.open(store_url, now=NOW) as store:
        frozen = store.frozen_issue("2018-W01")
        assert frozen is not None
        (old,) = frozen.variants
        # The fixed tokens they hold; the preferences link came later, its token is derived and never in them.
        assert (
            dataclasses.replace(old.tokens, preferences_url=placeholders.LEGACY.preferences_url) == placeholders.LEGACY
        )
        assert old.tokens.preferences_url not in old.html + old.text + old.subject
        mine = placeholders.personalise(
            old, placeholders.values_for("Ann", "ann@example.org", "https://x/u/t", title="W")
        )
        assert mine.subject == "Weekly for Ann"
        assert mine.html == "<p>Hello Ann,</p><p>as ann@example.org.</p><a href='https://x/u/t'>Unsubscribe</a>"
        web = placeholders.personalise(old, placeholders.web_values("W", "https://x"))
        assert "ann@" not in web.html and "DIGESTx" not in web.html and "https://x/unsubscribe-help" in web.html
        # A new variant of the old issue gets its own random tokens, kept beside the old ones.
        late = Rendered("2018-W01", "policy", (), "S", "<p>h</p>", "t")
        assert store.add_variants("2018-W01", [late]) == 1
        again = store.frozen_issue("2018-W01")
        assert again is not None and again.variants == (old, late)
    assert [r[0] for r in migration_rows(store_url)] == [m.number for m in MIGRATIONS]


@pytest.mark.parametrize("bad", ["not json", '{"name": "DIGESTxNAMEx7f3a"}', ""], ids=["garbage", "partial", "empty"])
def test_damaged_stored_tokens_are_a_store_error(store_url: str, bad: str) -> None:
    Store.open(store_url, now=NOW).close()
    _freeze_the_old_way(store_url, tokens=bad)
    with Store.open(store_url, now=NOW) as store, pytest.raises(StoreError, match="bad placeholder tokens"):
        store.frozen_issue("2018-W01")


def test_fresh_variants_store_their_random_tokens(any_store: Store) -> None:
    first = rendered("2018-W02", "all", "First")
    any_store.freeze_issue("2018-W02", "{}", [first], NOW)
    frozen = any_store.frozen_issue("2018-W02")
    assert frozen is not None and frozen.variants[0].tokens == first.tokens
    assert first.tokens.name.startswith("X") and len(first.tokens.name) == 33
