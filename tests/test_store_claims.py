"""Store: ``claim_next``, the sender's group-committed claim, on SQLite and PostgreSQL.

Many threads (and two stores, i.e. two processes' worth of connections)
claim through it at once: every row is claimed exactly once, every ``sent``
mark that rode with a claim is committed, the states and timestamps are
the ones the SQLAlchemy statements of ``ledger.py`` write, and a database
error reaches every waiting thread as one ``StoreError`` line.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from digest.errors import StoreError
from digest.models import Delivery
from digest.store import Store

NOW = dt.datetime(2018, 1, 15, 0, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=1)
KEY = "2018-W02"


def run_threads(target: Callable[[int], None], n: int) -> list[BaseException]:
    """Run ``target(0)`` ... ``target(n - 1)`` in threads at once; return what they raised."""
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            target(k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_claim_next_writes_what_claim_and_mark_sent_write(any_store: Store) -> None:
    any_store.plan_deliveries(KEY, [("a@x.org", "all"), ("b@x.org", "all"), ("c@x.org", "all")], NOW)
    # The reference: the SQLAlchemy statements of the ledger.
    assert any_store.claim(KEY, "a@x.org", NOW)
    any_store.mark_sent(KEY, "a@x.org", LATER)
    # The hot path: claim b, then claim c carrying b's sent mark.
    assert any_store.claim_next(KEY, "B@x.org", NOW)
    assert any_store.claim_next(KEY, "c@x.org", LATER, sent=["b@X.org"])
    rows = {r.email: r for r in any_store.deliveries(KEY)}
    a, b, c = rows["a@x.org"], rows["b@x.org"], rows["c@x.org"]
    assert (a.state, a.attempts, a.first_attempt) == (b.state, b.attempts, b.first_attempt) == (Delivery.SENT, 1, NOW)
    assert (c.state, c.attempts, c.first_attempt) == (Delivery.CLAIMED, 1, LATER)


def test_claim_next_takes_due_retries_and_unknown_only_when_asked(any_store: Store) -> None:
    any_store.plan_deliveries(KEY, [("t@x.org", "all"), ("u@x.org", "all"), ("p@x.org", "all")], NOW)
    for email in ("t@x.org", "u@x.org", "p@x.org"):
        assert any_store.claim_next(KEY, email, NOW)
    any_store.mark_failed(KEY, "t@x.org", NOW, permanent=False, code=451, error="later", next_attempt=LATER)
    any_store.mark_unknown(KEY, "u@x.org", NOW, "lost after the dot")
    any_store.mark_failed(KEY, "p@x.org", NOW, permanent=True, code=550, error="no such user", next_attempt=None)
    assert not any_store.claim_next(KEY, "t@x.org", NOW)  # not due yet
    assert any_store.claim_next(KEY, "t@x.org", LATER)
    assert not any_store.claim_next(KEY, "u@x.org", LATER)
    assert any_store.claim_next(KEY, "u@x.org", LATER, include_unknown=True)
    assert not any_store.claim_next(KEY, "p@x.org", LATER, include_unknown=True)  # refused for good
    assert not any_store.claim_next(KEY, "ghost@x.org", LATER)  # never planned
    attempts = {r.email: r.attempts for r in any_store.deliveries(KEY)}
    assert attempts == {"t@x.org": 2, "u@x.org": 2, "p@x.org": 1}


def test_many_threads_claim_each_row_once_and_every_mark_lands(store_url: str) -> None:
    emails = [f"r{i:04d}@x.org" for i in range(600)]
    won: list[list[str]] = [[] for _ in range(8)]
    with Store.open(store_url) as one, Store.open(store_url) as two:
        one.plan_deliveries(KEY, [(e, "all") for e in emails], NOW)
        start = threading.Barrier(8)

        def connection(k: int) -> None:
            # Like one SMTP connection: claim the next row, carrying the previous one's mark.
            store = (one, two)[k % 2]
            order = emails if k % 2 else list(reversed(emails))
            sent: list[str] = []
            start.wait()
            for email in order:
                if store.claim_next(KEY, email, NOW, sent=sent):
                    won[k].append(email)
                    sent = [email]
                else:
                    sent = []  # the marks rode with the failed claim too
            store.mark_sent_many(KEY, sent, NOW)

        assert run_threads(connection, 8) == []
        assert sorted(e for w in won for e in w) == emails  # each row exactly once
        counts = two.delivery_counts(KEY)
        assert counts[Delivery.SENT] == 600 and counts[Delivery.CLAIMED] == 0
        assert {r.attempts for r in one.deliveries(KEY)} == {1}


def test_a_locked_database_fails_every_waiting_claim_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "digest.db"
    with Store.open(f"sqlite:///{path}", busy_timeout=0.2) as store:
        store.plan_deliveries(KEY, [(f"r{i}@x.org", "all") for i in range(4)], NOW)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        errors = run_threads(lambda i: store.claim_next(KEY, f"r{i}@x.org", NOW) and None, 4)
        other.execute("ROLLBACK")
        other.close()
        assert len(errors) == 4 and all(isinstance(e, StoreError) for e in errors)
        assert len({id(e) for e in errors}) == 4  # each thread raises its own error
        message = str(errors[0])
        assert "\n" not in message and str(path) in message and "locked" in message
        # Nothing was half-done, and the store works again once the lock is gone.
        assert store.delivery_counts(KEY)[Delivery.PENDING] == 4
        assert store.claim_next(KEY, "r0@x.org", NOW)


def test_a_naive_time_is_refused_before_anything_is_written(any_store: Store) -> None:
    any_store.plan_deliveries(KEY, [("a@x.org", "all")], NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        any_store.claim_next(KEY, "a@x.org", dt.datetime(2018, 1, 15))
    assert any_store.delivery_counts(KEY)[Delivery.PENDING] == 1


def test_one_batch_with_a_row_marked_by_one_and_claimed_by_another(any_store: Store) -> None:
    # What the group commit meets when connections ask at the same instant (made deterministic
    # here by handing it the batch): a row marked sent by its claimer while another connection
    # asks to claim it, two connections asking for the same due row, and an ordinary claim.
    from digest.store.claims import _Request

    any_store.plan_deliveries(KEY, [(e, "all") for e in ("a@x.org", "b@x.org", "c@x.org")], NOW)
    assert any_store.claim_next(KEY, "a@x.org", NOW)
    now = "2018-01-15T00:00:00.000000+00:00"
    marker = _Request(KEY, "c@x.org", now, ["a@x.org"], False)
    late = _Request(KEY, "a@x.org", now, [], False)
    first, second = _Request(KEY, "b@x.org", now, [], False), _Request(KEY, "b@x.org", now, [], False)
    any_store._commit_claims([late, first, marker, second])
    assert all(r.done and r.error is None for r in (marker, late, first, second))
    assert (marker.won, late.won, first.won, second.won) == (True, False, True, False)
    rows = {r.email: (r.state, r.attempts) for r in any_store.deliveries(KEY)}
    assert rows == {
        "a@x.org": (Delivery.SENT, 1),
        "b@x.org": (Delivery.CLAIMED, 1),
        "c@x.org": (Delivery.CLAIMED, 1),
    }
