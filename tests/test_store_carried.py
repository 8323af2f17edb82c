"""The carried-entries record: migration 3, one transaction with the freeze, an entry in at most one issue."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from digest.codec import issue_from_json, issue_to_json
from digest.errors import StoreError
from digest.models import Entry, FetchStatus, IsoWeek, Issue, Rendered, Section, SourceResult, SourceState
from digest.store import IssueEntry, Store

NOW = dt.datetime(2018, 1, 15, 9, tzinfo=dt.UTC)
REPO = Path(__file__).resolve().parents[1]


def entry(eid: str, day: int) -> Entry:
    return Entry(id=eid, source="S", title=f"Title {eid}", published=dt.datetime(2018, 1, day, 12, tzinfo=dt.UTC))


def variant(key: str) -> Rendered:
    return Rendered(issue_key=key, variant="all", themes=("A",), subject=f"Subject {key}", html="<p>x</p>", text="x")


def stored(store: Store, *entries: Entry) -> None:
    result = SourceResult("S", FetchStatus.OK, tuple(entries), SourceState())
    store.record_fetch(result, NOW)


def record(eid: str, **kw: object) -> IssueEntry:
    return IssueEntry(eid, "0" * 64, **kw)  # type: ignore[arg-type]


def test_migration_3_is_recorded(any_store: Store) -> None:
    with any_store._read() as conn:
        numbers = [r[0] for r in conn.execute(text("SELECT number FROM migrations ORDER BY number"))]
        assert conn.execute(text("SELECT count(*) FROM issue_entries")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM held_issues")).scalar() == 0
    assert 3 in numbers


def test_the_freeze_records_its_entries_and_an_entry_is_never_in_two_issues(any_store: Store) -> None:
    stored(any_store, entry("x", 9), entry("y", 10), entry("z", 11))
    assert any_store.freeze_issue(
        "2018-W02", "{}", [variant("2018-W02")], NOW, [record("x"), record("y", carried_from="2018-W01")]
    )
    assert {r.entry_id: (r.issue_key, r.carried_from) for r in any_store.issue_entries()} == {
        "x": ("2018-W02", None),
        "y": ("2018-W02", "2018-W01"),
    }
    with pytest.raises(StoreError):
        any_store.freeze_issue("2018-W03", "{}", [variant("2018-W03")], NOW, [record("z"), record("x")])
    # The failed freeze left nothing: no issue, no variants, no record of z.
    assert any_store.frozen_issue("2018-W03") is None
    assert {r.entry_id for r in any_store.issue_entries()} == {"x", "y"}
    assert any_store.entry_issues() == {"x": "2018-W02", "y": "2018-W02"}
    # Freezing the same key again changes nothing.
    assert not any_store.freeze_issue("2018-W02", "{}", [variant("2018-W02")], NOW, [record("z")])
    assert "z" not in any_store.entry_issues()


def test_unissued_entries_leave_out_other_issues_and_expired_ones(any_store: Store) -> None:
    stored(any_store, entry("x", 9), entry("y", 10), entry("old", 2))
    any_store.freeze_issue("2018-W02", "{}", [variant("2018-W02")], NOW, [record("x"), record("old", expired=True)])
    since, until = dt.datetime(2018, 1, 1, tzinfo=dt.UTC), dt.datetime(2018, 2, 1, tzinfo=dt.UTC)
    assert [e.id for e in any_store.unissued_entries(since, until, "2018-W03")] == ["y"]
    assert [e.id for e in any_store.unissued_entries(since, until, "2018-W02")] == ["x", "y"]
    assert any_store.entry_issues() == {"x": "2018-W02"}  # an expired entry went out in no issue


def test_holds_mark_where_the_digest_started(any_store: Store) -> None:
    assert any_store.first_issue_key() is None
    any_store.hold_issue("2018-W05", NOW, 1)
    any_store.hold_issue("2018-W05", NOW + dt.timedelta(days=1), 2)  # held again: the last hold wins
    assert any_store.held_issues() == [("2018-W05", NOW + dt.timedelta(days=1), 2)]
    any_store.freeze_issue("2018-W03..2018-W04", "{}", [], NOW)
    assert any_store.first_issue_key() == "2018-W03..2018-W04"
    any_store.hold_issue("2018-W03..2018-W04", NOW, 0)  # frozen already: it is not held
    assert [k for k, _, _ in any_store.held_issues()] == ["2018-W05"]


def test_a_failure_between_the_issue_and_its_entries_leaves_neither(store: Store) -> None:
    stored(store, entry("x", 9))
    with store._write() as conn:  # a real failure inside the freeze's transaction, after the issue row
        conn.execute(
            text("CREATE TRIGGER boom BEFORE INSERT ON issue_entries BEGIN SELECT RAISE(ABORT, 'injected'); END")
        )
    with pytest.raises(StoreError, match="injected"):
        store.freeze_issue("2018-W02", "{}", [variant("2018-W02")], NOW, [record("x")])
    assert store.frozen_issue("2018-W02") is None
    assert store.issue_entries() == []
    with store._write() as conn:
        conn.execute(text("DROP TRIGGER boom"))
    assert store.freeze_issue("2018-W02", "{}", [variant("2018-W02")], NOW, [record("x")])
    assert store.entry_issues() == {"x": "2018-W02"}


KILLED_FREEZE = """
import datetime as dt, sys, time
from sqlalchemy import event
from digest.models import Rendered
from digest.store import IssueEntry, Store

store = Store.open(sys.argv[1])

def pause(conn, cursor, statement, *args):
    if statement.lstrip().upper().startswith("INSERT INTO ISSUE_ENTRIES"):
        print("between", flush=True)  # the issue row is written, its entries are not
        time.sleep(60)

event.listen(store._engine, "before_cursor_execute", pause)
now = dt.datetime(2018, 1, 15, 9, tzinfo=dt.UTC)
v = Rendered("2018-W02", "all", ("A",), "s", "<p>x</p>", "x")
store.freeze_issue("2018-W02", "{}", [v], now, [IssueEntry("x", "0" * 64)])
"""


def test_a_process_killed_between_the_issue_and_its_entries_leaves_neither(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'digest.db'}"
    with Store.open(url) as store:
        stored(store, entry("x", 9))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", KILLED_FREEZE, url], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "between"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    with Store.open(url) as store:
        assert store.frozen_issue("2018-W02") is None
        assert store.issue_entries() == []


def test_a_payload_naming_unknown_carried_entries_ignores_them() -> None:
    week = IsoWeek(2018, 3)
    issue = Issue("2018-W03", "t", (week,), (Section("A", week, (entry("x", 16),)),), (("x", IsoWeek(2018, 2)),))
    again = issue_from_json(issue_to_json(issue))
    assert again == issue
    hostile = issue_to_json(issue).replace('"carried":{"x":"2018-W02"}', '"carried":{"nope":"2018-W01","x":"2018-W02"}')
    assert "nope" in hostile
    assert issue_from_json(hostile).carried == (("x", IsoWeek(2018, 2)),)
    plain = Issue("2018-W03", "t", (week,), ())
    assert "carried" not in issue_to_json(plain) and "updates" not in issue_to_json(plain)
