"""Store: the send's streamed reads of the ledger (the due rows a page at a time, their count, row states)."""

from __future__ import annotations

import datetime as dt

from digest.models import Delivery
from digest.store import Store

NOW = dt.datetime(2018, 1, 15, 0, 0, tzinfo=dt.UTC)
KEY = "2018-W02"


def plan(store: Store, *emails: str, variant: str = "all") -> int:
    return store.plan_deliveries(KEY, [(e, variant) for e in emails], NOW)


def test_iter_due_gives_due_deliveries_a_page_at_a_time(any_store: Store) -> None:
    emails = [f"r{i:02d}@x.org" for i in range(23)]
    any_store.plan_deliveries(KEY, [(e, f"v{i % 3}") for i, e in enumerate(reversed(emails))], NOW)
    any_store.claim(KEY, "r05@x.org", NOW)
    any_store.mark_sent(KEY, "r05@x.org", NOW)
    any_store.claim(KEY, "r07@x.org", NOW)  # claimed: not due
    later = NOW + dt.timedelta(hours=1)
    any_store.claim(KEY, "r09@x.org", NOW)
    any_store.mark_failed(KEY, "r09@x.org", NOW, permanent=False, code=451, error="busy", next_attempt=later)
    for at in (NOW, later):
        full = [(r.email, r.variant) for r in any_store.due_deliveries(KEY, at)]
        assert list(any_store.iter_due(KEY, at, page=4)) == full  # pages of 4 over 21 or 22 rows
        assert list(any_store.iter_due(KEY, at, page=len(full))) == full  # the last page is full
        assert any_store.due_count(KEY, at) == len(full)
    assert "r09@x.org" not in dict(any_store.iter_due(KEY, NOW))
    assert list(any_store.iter_due("2018-W09", NOW)) == [] and any_store.due_count("2018-W09", NOW) == 0


def test_iter_due_puts_rows_marked_last_after_the_others(any_store: Store) -> None:
    plan(any_store, "a@x", "b@x", "c@x", "d@x", "e@x")
    for email, error in (("b@x", "the relay refuses us; due again"), ("d@x", "busy"), ("a@x", "refuses us")):
        any_store.claim(KEY, email, NOW)
        any_store.mark_failed(KEY, email, NOW, permanent=False, code=421, error=error, next_attempt=None)
    got = [e for e, _ in any_store.iter_due(KEY, NOW, last="refuses us", page=2)]
    assert got == ["c@x", "d@x", "e@x", "a@x", "b@x"]
    assert [e for e, _ in any_store.iter_due(KEY, NOW, last="", page=2)] == ["a@x", "b@x", "c@x", "d@x", "e@x"]


def test_iter_due_takes_last_literally(any_store: Store) -> None:
    # Hostile: LIKE wildcards in the marker match only themselves.
    plan(any_store, "a@x", "b@x", "c@x")
    for email, error in (("a@x", "100% busy_now"), ("b@x", "100 busy now")):
        any_store.claim(KEY, email, NOW)
        any_store.mark_failed(KEY, email, NOW, permanent=False, code=421, error=error, next_attempt=None)
    assert [e for e, _ in any_store.iter_due(KEY, NOW, last="0% busy_")] == ["b@x", "c@x", "a@x"]
    assert [e for e, _ in any_store.iter_due(KEY, NOW, last="%")] == ["b@x", "c@x", "a@x"]


def test_ledger_states_are_the_rows_address_state_and_error(any_store: Store) -> None:
    plan(any_store, "b@x", "a@x")
    any_store.claim(KEY, "b@x", NOW)
    any_store.mark_skipped(KEY, "b@x", NOW, "gone")
    assert [tuple(r) for r in any_store.ledger_states(KEY)] == [
        ("a@x", Delivery.PENDING, None),
        ("b@x", Delivery.SKIPPED, "gone"),
    ]
    assert any_store.ledger_states("2018-W09") == []
