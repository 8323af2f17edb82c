"""Store: the send ledger (plan, claim, outcomes) and its behaviour under concurrency."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from digest.errors import StoreError
from digest.models import Delivery
from digest.store import STALE_CLAIM_ERROR, DeliveryRow, Store

NOW = dt.datetime(2018, 1, 15, 0, 0, tzinfo=dt.UTC)
KEY = "2018-W02"


def plan(store: Store, *emails: str, variant: str = "all") -> int:
    return store.plan_deliveries(KEY, [(e, variant) for e in emails], NOW)


def states(store: Store) -> dict[str, Delivery]:
    return {r.email: r.state for r in store.deliveries(KEY)}


def test_plan_is_idempotent(any_store: Store) -> None:
    assert plan(any_store, "a@x.org", "b@x.org", "a@x.org") == 2
    assert any_store.claim(KEY, "a@x.org", NOW)
    # Re-planning adds only the new address and leaves the claimed row alone.
    assert any_store.plan_deliveries(KEY, [("a@x.org", "other"), ("c@x.org", "policy")], NOW) == 1
    rows = {r.email: r for r in any_store.deliveries(KEY)}
    assert rows["a@x.org"].state is Delivery.CLAIMED and rows["a@x.org"].variant == "all"
    assert rows["c@x.org"] == DeliveryRow(KEY, "c@x.org", "policy", Delivery.PENDING, 0, None, None, None)
    # Another issue has its own rows.
    assert any_store.plan_deliveries("2018-W03", [("a@x.org", "all")], NOW) == 1
    assert any_store.delivery_counts(KEY)[Delivery.PENDING] == 2


def test_claim_is_exclusive_and_counts_attempts(any_store: Store) -> None:
    plan(any_store, "a@x.org")
    assert any_store.claim(KEY, "a@x.org", NOW) is True
    assert any_store.claim(KEY, "a@x.org", NOW) is False
    assert any_store.claim(KEY, "nobody@x.org", NOW) is False
    any_store.mark_sent(KEY, "a@x.org", NOW)
    assert any_store.claim(KEY, "a@x.org", NOW) is False  # done
    (row,) = any_store.deliveries(KEY)
    assert (row.state, row.attempts) == (Delivery.SENT, 1)


def test_state_transitions(any_store: Store) -> None:
    plan(any_store, "sent@x", "perm@x", "temp@x", "unk@x", "skip@x")
    for email in ("sent@x", "perm@x", "temp@x", "unk@x"):
        assert any_store.claim(KEY, email, NOW)
    retry = NOW + dt.timedelta(minutes=30)
    any_store.mark_sent(KEY, "sent@x", NOW)
    any_store.mark_failed(KEY, "perm@x", NOW, permanent=True, code=550, error="no such user", next_attempt=retry)
    any_store.mark_failed(KEY, "temp@x", NOW, permanent=False, code=451, error="try later", next_attempt=retry)
    any_store.mark_unknown(KEY, "unk@x", NOW, "connection lost after DATA")
    any_store.mark_skipped(KEY, "skip@x", NOW, "unsubscribed")
    rows = {r.email: r for r in any_store.deliveries(KEY)}
    assert rows["sent@x"].state is Delivery.SENT
    assert (rows["perm@x"].state, rows["perm@x"].last_code, rows["perm@x"].next_attempt) == (
        Delivery.FAILED_PERMANENT,
        550,
        None,
    )
    assert (rows["temp@x"].state, rows["temp@x"].last_code, rows["temp@x"].next_attempt) == (
        Delivery.FAILED_TEMPORARY,
        451,
        retry,
    )
    assert (rows["unk@x"].state, rows["unk@x"].last_error) == (Delivery.UNKNOWN, "connection lost after DATA")
    assert (rows["skip@x"].state, rows["skip@x"].last_error) == (Delivery.SKIPPED, "unsubscribed")
    counts = any_store.delivery_counts(KEY)
    assert counts == {**dict.fromkeys(Delivery, 0), **Counter(r.state for r in rows.values())}
    assert any_store.deliveries(KEY, Delivery.UNKNOWN) == [rows["unk@x"]]


def test_a_sent_row_stays_sent(any_store: Store) -> None:
    plan(any_store, "a@x")
    any_store.claim(KEY, "a@x", NOW)
    any_store.mark_sent(KEY, "a@x", NOW)
    any_store.mark_failed(KEY, "a@x", NOW, permanent=False, code=421, error="late", next_attempt=None)
    any_store.mark_unknown(KEY, "a@x", NOW, "late")
    assert states(any_store) == {"a@x": Delivery.SENT}


def test_marking_an_unplanned_row_is_an_error(any_store: Store) -> None:
    with pytest.raises(StoreError, match=r"no delivery of issue 2018-W02 to ghost@x is planned"):
        any_store.mark_sent(KEY, "ghost@x", NOW)
    with pytest.raises(StoreError, match="ghost@x"):
        any_store.mark_unknown(KEY, "ghost@x", NOW, "?")


def test_due_deliveries_honours_next_attempt(any_store: Store) -> None:
    plan(any_store, "p@x", "t@x", "t0@x", "u@x", "s@x")
    for email in ("t@x", "t0@x", "u@x", "s@x"):
        any_store.claim(KEY, email, NOW)
    later = NOW + dt.timedelta(hours=1)
    any_store.mark_failed(KEY, "t@x", NOW, permanent=False, code=451, error="busy", next_attempt=later)
    any_store.mark_failed(KEY, "t0@x", NOW, permanent=False, code=None, error="busy", next_attempt=None)
    any_store.mark_unknown(KEY, "u@x", NOW, "lost")
    any_store.mark_sent(KEY, "s@x", NOW)

    def due(at: dt.datetime, **kw: bool) -> list[str]:
        return [r.email for r in any_store.due_deliveries(KEY, at, **kw)]

    assert due(NOW) == ["p@x", "t0@x"]
    assert due(later - dt.timedelta(microseconds=1)) == ["p@x", "t0@x"]
    assert due(later) == ["p@x", "t0@x", "t@x"]
    assert due(later, include_unknown=True) == ["p@x", "t0@x", "t@x", "u@x"]
    # A claim honours the same rule.
    assert any_store.claim(KEY, "t@x", NOW) is False
    assert any_store.claim(KEY, "u@x", later) is False
    assert any_store.claim(KEY, "u@x", later, include_unknown=True) is True
    assert any_store.claim(KEY, "t@x", later) is True
    assert {r.email: r.attempts for r in any_store.deliveries(KEY)}["t@x"] == 2


def test_release_stale_claims_makes_them_unknown(any_store: Store) -> None:
    plan(any_store, "a@x", "b@x", "c@x")
    any_store.claim(KEY, "a@x", NOW)
    any_store.claim(KEY, "b@x", NOW)
    any_store.mark_sent(KEY, "b@x", NOW)
    assert any_store.release_stale_claims(KEY, NOW) == 1
    assert any_store.release_stale_claims(KEY, NOW) == 0
    assert states(any_store) == {"a@x": Delivery.UNKNOWN, "b@x": Delivery.SENT, "c@x": Delivery.PENDING}
    assert any_store.deliveries(KEY, Delivery.UNKNOWN)[0].last_error == STALE_CLAIM_ERROR
    assert [r.email for r in any_store.due_deliveries(KEY, NOW)] == ["c@x"]
    assert any_store.requeue_unknown(KEY, NOW) == 1
    assert [r.email for r in any_store.due_deliveries(KEY, NOW)] == ["a@x", "c@x"]


def test_batched_claim_and_mark_sent(any_store: Store) -> None:
    emails = [f"user{i:04d}@x.org" for i in range(1200)]  # more than one IN batch
    any_store.plan_deliveries(KEY, [(e, "all") for e in emails], NOW)
    assert any_store.claim(KEY, emails[5], NOW)
    wanted = [*reversed(emails), "ghost@x.org"]
    got = any_store.claim_many(KEY, wanted, NOW)
    assert got == [e for e in wanted if e not in (emails[5], "ghost@x.org")]
    assert any_store.claim_many(KEY, emails, NOW) == []
    assert any_store.mark_sent_many(KEY, emails[:1000], NOW) == 1000
    counts = any_store.delivery_counts(KEY)
    assert (counts[Delivery.SENT], counts[Delivery.CLAIMED]) == (1000, 200)


def test_claim_next_records_the_sent_and_claims_in_one_go(any_store: Store) -> None:
    plan(any_store, "a@x.org", "b@x.org", "c@x.org")
    assert any_store.claim_next(KEY, "a@x.org", NOW) is True
    assert any_store.claim_next(KEY, "b@x.org", NOW, sent=["a@x.org"]) is True
    assert any_store.claim_next(KEY, "b@x.org", NOW, sent=[]) is False  # already claimed
    counts = any_store.delivery_counts(KEY)
    assert (counts[Delivery.SENT], counts[Delivery.CLAIMED], counts[Delivery.PENDING]) == (1, 1, 1)
    # A failed claim still commits the sent marks that came with it.
    assert any_store.claim_next(KEY, "a@x.org", NOW, sent=["b@x.org"]) is False
    assert any_store.delivery_counts(KEY)[Delivery.SENT] == 2


def test_plan_many_rows_in_batches(any_store: Store) -> None:
    rows = [(f"reader{i:06d}@example.org", f"v{i % 7}") for i in range(30_000)]
    assert any_store.plan_deliveries(KEY, rows, NOW) == 30_000
    assert any_store.plan_deliveries(KEY, rows, NOW) == 0
    assert any_store.delivery_counts(KEY)[Delivery.PENDING] == 30_000


def race(workers: list[Callable[[], list[str]]]) -> list[str]:
    """Run the workers at once; return everything they claimed."""
    start = threading.Barrier(len(workers))
    results: list[list[str]] = [[] for _ in workers]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = workers[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return [e for r in results for e in r]


def test_racing_claims_take_each_row_once(store_url: str) -> None:
    emails = [f"r{i:03d}@x.org" for i in range(150)]
    with Store.open(store_url) as one, Store.open(store_url) as two:
        one.plan_deliveries(KEY, [(e, "all") for e in emails], NOW)

        def singles(store: Store) -> Callable[[], list[str]]:
            return lambda: [e for e in emails if store.claim(KEY, e, NOW)]

        def batches(store: Store) -> Callable[[], list[str]]:
            return lambda: [e for i in range(0, 150, 10) for e in store.claim_many(KEY, emails[i : i + 10], NOW)]

        claimed = race([singles(one), singles(two), singles(one), batches(two), batches(one)])
        assert sorted(claimed) == emails  # every row exactly once
        assert {r.attempts for r in two.deliveries(KEY)} == {1}
        assert one.delivery_counts(KEY)[Delivery.CLAIMED] == 150


def test_racing_lock_has_one_winner(store_url: str) -> None:
    with Store.open(store_url) as one, Store.open(store_url) as two:
        stores = [one, two, one, two]

        def taker(i: int) -> Callable[[], list[str]]:
            owner = f"run-{i}"
            return lambda: [owner] if stores[i].acquire_lock("send", owner, NOW, dt.timedelta(minutes=5)) else []

        winners = race([taker(i) for i in range(4)])
        assert len(winners) == 1
        assert one.lock_holder("send", NOW) == winners[0]


def test_an_address_respelt_in_another_case_is_the_same_row(any_store: Store) -> None:
    assert plan(any_store, "Ada@Example.org") == 1
    assert any_store.claim(KEY, "ada@example.org", NOW)
    any_store.mark_sent(KEY, "ADA@example.org", NOW)
    assert plan(any_store, "ada@example.org", "ADA@EXAMPLE.ORG") == 0
    assert any_store.due_deliveries(KEY, NOW) == []
    assert any_store.claim(KEY, "Ada@Example.org", NOW) is False
    (row,) = any_store.deliveries(KEY)
    assert (row.email, row.state) == ("ada@example.org", Delivery.SENT)
    plan(any_store, "Bo@x.org")
    assert any_store.claim_many(KEY, ["Bo@x.org", "bo@x.org"], NOW) == ["Bo@x.org"]


def test_requeue_and_unfinished_issues(any_store: Store) -> None:
    plan(any_store, "a@x.org", "b@x.org", "c@x.org")
    any_store.claim(KEY, "a@x.org", NOW)
    any_store.mark_sent(KEY, "a@x.org", NOW)
    any_store.claim(KEY, "b@x.org", NOW)
    any_store.mark_failed(KEY, "b@x.org", NOW, permanent=True, code=550, error="no", next_attempt=None)
    assert any_store.unfinished_issues(NOW) == [KEY]  # c is still pending
    any_store.claim(KEY, "c@x.org", NOW)
    any_store.mark_sent(KEY, "c@x.org", NOW)
    assert any_store.unfinished_issues(NOW) == []
    assert any_store.requeue(KEY, (Delivery.FAILED_PERMANENT, Delivery.SENT), NOW) == 1  # sent rows stay sent
    assert any_store.unfinished_issues(NOW) == [KEY]
    assert [r.email for r in any_store.due_deliveries(KEY, NOW)] == ["b@x.org"]


def test_migration_5_keeps_old_rows_and_dates_their_first_try(store_url: str) -> None:
    from digest.store import MIGRATIONS

    old = Store.open(store_url, now=NOW, migrations=MIGRATIONS[:1])  # a database from before migration 5
    try:
        old.plan_deliveries(KEY, [("a@x.org", "all"), ("b@x.org", "all")], NOW)
        with old._write() as conn:  # claim the way the first schema could (no first_attempt column yet)
            conn.exec_driver_sql(
                "UPDATE deliveries SET state = 'failed-temporary', attempts = 2, updated_at = ? WHERE email = ?"
                if store_url.startswith("sqlite")
                else "UPDATE deliveries SET state = 'failed-temporary', attempts = 2, updated_at = %s WHERE email = %s",
                ("2018-01-16T00:00:00.000000+00:00", "a@x.org"),
            )
    finally:
        old.close()
    store = Store.open(store_url, now=NOW)
    try:
        rows = {r.email: r for r in store.deliveries(KEY)}
        assert rows["a@x.org"].first_attempt == dt.datetime(2018, 1, 16, tzinfo=dt.UTC)
        assert rows["b@x.org"].first_attempt is None and rows["b@x.org"].state is Delivery.PENDING
        late = dt.datetime(2018, 1, 19, 1, tzinfo=dt.UTC)
        assert store.give_up(KEY, dt.timedelta(hours=72), late, lambda n: f"gave up after {n} tries") == ["a@x.org"]
        assert store.deliveries(KEY, Delivery.FAILED_PERMANENT)[0].last_error == "gave up after 2 tries"
        assert store.claim(KEY, "b@x.org", late)
        assert {r.email: r for r in store.deliveries(KEY)}["b@x.org"].first_attempt == late
        assert store.claim(KEY, "b@x.org", late) is False  # a second claim neither wins nor re-dates
    finally:
        store.close()


def test_plan_deliveries_streams_an_iterator_and_keeps_the_first_spelling(any_store: Store) -> None:
    rows = ((f"Reader{i}@X.org", "all" if i % 2 else "policy") for i in range(12_000))
    assert any_store.plan_deliveries(KEY, rows, NOW) == 12_000
    again = iter([("READER1@x.org", "policy"), ("new@x.org", "all"), ("New@X.org", "policy")])
    assert any_store.plan_deliveries(KEY, again, NOW) == 1
    by_email = {r.email: r for r in any_store.deliveries(KEY)}
    assert by_email["reader1@x.org"].variant == "all" and by_email["new@x.org"].variant == "all"
    first = DeliveryRow(KEY, "reader0@x.org", "policy", Delivery.PENDING, 0, None, None, None)
    assert by_email["reader0@x.org"] == first
    assert any_store.plan_deliveries(KEY, iter(()), NOW) == 0


def test_plan_deliveries_refuses_a_naive_time_before_writing(any_store: Store) -> None:
    with pytest.raises(ValueError):
        any_store.plan_deliveries(KEY, [("a@x.org", "all")], dt.datetime(2018, 1, 15))
    assert any_store.deliveries(KEY) == []
