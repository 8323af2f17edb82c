"""``Store.sent_per_minute``: the send rate of one issue, from its ledger rows' times."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from digest.store import Store

START = dt.datetime(2018, 1, 16, 10, 0, 30, tzinfo=dt.UTC)


def send(store: Store, key: str, email: str, at: dt.datetime) -> None:
    store.plan_deliveries(key, [(email, "all")], at)
    assert store.claim(key, email, at)
    store.mark_sent(key, email, at)


def test_minutes_from_the_first_send_to_the_last_with_gaps_as_zero(any_store: Store) -> None:
    key = "2018-W02"
    for n, offset in enumerate([0, 10, 25, 200]):  # seconds: three in 10:00, one in 10:03
        send(any_store, key, f"r{n}@example.org", START + dt.timedelta(seconds=offset))
    # An aware time in another zone counts in its UTC minute.
    send(any_store, key, "tz@example.org", (START + dt.timedelta(minutes=4)).astimezone(ZoneInfo("Asia/Shanghai")))
    any_store.plan_deliveries(key, [("waiting@example.org", "all")], START)  # pending: not sent
    any_store.plan_deliveries("2018-W01", [("other@example.org", "all")], START)
    assert any_store.claim("2018-W01", "other@example.org", START)
    any_store.mark_sent("2018-W01", "other@example.org", START)  # another issue's send

    minute = START.replace(second=0)
    got = any_store.sent_per_minute(key)
    assert got == [(minute + dt.timedelta(minutes=i), n) for i, n in enumerate([3, 0, 0, 1, 1])]
    assert all(when.tzinfo is not None and when.utcoffset() == dt.timedelta(0) for when, _ in got)


def test_an_issue_nothing_was_sent_of(any_store: Store) -> None:
    assert any_store.sent_per_minute("2018-W02") == []
    any_store.plan_deliveries("2018-W02", [("a@example.org", "all")], START)
    assert any_store.sent_per_minute("2018-W02") == []
