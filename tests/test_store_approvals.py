"""The approvals part of the store (migration 10), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from digest.store import Store

T0 = dt.datetime(2018, 1, 16, 10, 0, tzinfo=dt.UTC)
FP1, FP2 = "a" * 64, "b" * 64


def test_a_request_keeps_its_first_since_and_an_approval_its_first_row(any_store: Store) -> None:
    store = any_store
    assert store.approval_request("2018-W02") is None and store.awaiting_approval() == {}
    first = store.request_approval("2018-W02", FP1, T0)
    again = store.request_approval("2018-W02", FP2, T0 + dt.timedelta(hours=5))
    assert first == again and first.since == T0 and first.notified_at is None
    assert store.awaiting_approval() == {"2018-W02": T0}

    store.mark_notified("2018-W02", FP1, T0 + dt.timedelta(minutes=1))
    approval, fresh = store.approve("2018-W02", FP1, "ada", T0 + dt.timedelta(hours=1))
    twice, fresh_again = store.approve("2018-W02", FP1, "bob", T0 + dt.timedelta(hours=2))
    assert fresh and not fresh_again and twice == approval and approval.approved_by == "ada"
    assert store.awaiting_approval() == {}

    # New bytes were sent to the editors: that fingerprint has no approval, so the issue waits again.
    store.mark_notified("2018-W02", FP2, T0 + dt.timedelta(hours=3))
    assert store.awaiting_approval() == {"2018-W02": T0}
    assert store.approval("2018-W02", FP2) is None
    (summary_key,) = store.awaiting_approval()
    assert summary_key == "2018-W02"


def test_a_hostile_approver_name_is_stored_as_given(any_store: Store) -> None:
    name = "Robert'); DROP TABLE approvals;-- ☃"
    approval, _ = any_store.approve("2018-W02", FP1, name, T0)
    assert approval.approved_by == name
    assert any_store.approval("2018-W02", FP1) == approval
