"""``store.holders``: which worker holds a batch job, on both backends."""

from __future__ import annotations

import datetime as dt

from digest.store import Store

NOW = dt.datetime(2018, 1, 15, 8, 0, tzinfo=dt.UTC)


def test_a_batch_is_held_taken_over_and_released(any_store: Store) -> None:
    assert any_store.batch_holders([1, 2]) == {}
    any_store.hold_batch(1, "host-a:100", "2018-W02", NOW)
    any_store.hold_batch(2, "host-a:100", "2018-W02", NOW)
    # A re-run of job 1 by another worker (the first one died): the row is taken over.
    later = NOW + dt.timedelta(seconds=5)
    any_store.hold_batch(1, "host-b:7; DROP TABLE deliveries", "2018-W02", later)
    assert any_store.batch_holders([1, 2, 3]) == {
        1: ("host-b:7; DROP TABLE deliveries", later),
        2: ("host-a:100", NOW),
    }
    any_store.release_batch(2)
    any_store.release_batch(99)  # never held: nothing happens
    assert any_store.batch_holders(range(100)) == {1: ("host-b:7; DROP TABLE deliveries", later)}
