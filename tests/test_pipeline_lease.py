"""The send lock stays ours for as long as the send runs: its own heartbeat keeps it alive."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

from digest import pipeline
from digest.models import IsoWeek
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_a_final_reply_slower_than_the_lock_ttl_keeps_the_lock(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(3)
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1))
    ttl = dt.timedelta(seconds=0.6)
    smtp_server.inject("DATA", 250, delay=2.0)  # the first message's final reply comes after three ttls
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, ws.RUN_NOW)
    done: list[pipeline.SendSummary] = []

    def send() -> None:
        with pipeline.open_store(config) as own:
            done.append(pipeline.send_issue(config, own, (IsoWeek(2018, 2),), clock=utcnow, lock_ttl=ttl))

    worker = threading.Thread(target=send)
    worker.start()
    try:
        with pipeline.open_store(config) as other:
            deadline = time.monotonic() + 30
            while smtp_server.count("DATA") == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(ttl.total_seconds() * 2)  # past the ttl, with the reply still to come
            holder = other.lock_holder(pipeline.SEND_LOCK, utcnow())
            taken = other.acquire_lock(pipeline.SEND_LOCK, "someone-else", utcnow(), ttl)
            assert smtp_server.count("DATA") == 1 and not done  # still waiting for that reply
    finally:
        worker.join(timeout=60)
    assert holder is not None and holder != "someone-else"
    assert not taken
    assert done and done[0].report.sent == sum(ws.matches(r) for r in people)
    assert not any("lock was lost" in p for p in done[0].problems)


def test_leaving_the_lease_stops_its_heartbeat_before_releasing_the_lock(tmp_path: Path) -> None:
    # A heartbeat left running woke up a ttl/3 after the send, found the lock gone and logged an
    # error about a send long finished (into whatever output was current then).
    from digest.pipeline.lease import SEND_LOCK, SendLease
    from digest.store import Store

    with Store.open(f"sqlite:///{tmp_path / 'digest.db'}") as store:
        lease = SendLease(store, lambda: dt.datetime.now(dt.UTC), ttl=dt.timedelta(seconds=0.3))
        with lease:
            beat = lease._beat
            assert beat is not None and beat.is_alive()
            time.sleep(0.25)  # at least one refresh while held
            assert store.lock_holder(SEND_LOCK, dt.datetime.now(dt.UTC)) == lease.owner
        assert not beat.is_alive()
        assert store.lock_holder(SEND_LOCK, dt.datetime.now(dt.UTC)) is None
        time.sleep(0.25)  # a heartbeat still running would try to refresh now, and fail
        assert lease.lost is None
