"""One issue's send over the real loopback SMTP server: retries that end, old issues, lists that change.

Each test drives ``pipeline.send_issue`` (or ``run``) with a fixed clock
that the test moves, against a real SQLite file and aiosmtpd server.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from digest import pipeline
from digest.models import Delivery, IsoWeek
from digest.pipeline.deliver import human
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer

W02 = (IsoWeek(2018, 2),)


def test_durations_read_as_people_say_them() -> None:
    assert human(dt.timedelta(hours=72)) == "3 days"
    assert human(dt.timedelta(hours=24)) == "1 day"
    assert human(dt.timedelta(hours=36)) == "36 hours"
    assert human(dt.timedelta(minutes=90)) == "90 minutes"
    assert human(dt.timedelta(seconds=61)) == "61 seconds"
    assert human(dt.timedelta(0)) == "0 seconds"


def test_a_temporary_failure_is_given_up_after_retry_for(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(6)
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1))
    sender = dataclasses.replace(config.sender, max_attempts=1, retry_for=dt.timedelta(hours=72))
    config = dataclasses.replace(config, sender=sender)
    stuck = "r000@example.org"
    smtp_server.inject("RCPT", 451, recipient=stuck, text="4.7.1 greylisted, try again later", times=None)
    start = ws.RUN_NOW
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, start)
        first = pipeline.send_issue(config, store, W02, clock=ws.fixed_clock(start))
        pipeline.send_issue(config, store, W02, clock=ws.fixed_clock(start + dt.timedelta(hours=1)))
        young = pipeline.send_issue(config, store, W02, clock=ws.fixed_clock(start + dt.timedelta(hours=71)))
        row_young = {r.email: r for r in store.deliveries("2018-W02")}[stuck]
        late = start + dt.timedelta(hours=73)
        old = pipeline.send_issue(config, store, W02, clock=ws.fixed_clock(late))
        row = {r.email: r for r in store.deliveries("2018-W02")}[stuck]
        unfinished = store.unfinished_issues(late + dt.timedelta(days=30))
    assert first.report.failed_temporary == 1 and young.report.failed_temporary == 1
    assert row_young.state is Delivery.FAILED_TEMPORARY  # 71 hours: still trying
    assert row.state is Delivery.FAILED_PERMANENT
    assert row.last_error == "gave up after 3 tries over 3 days"
    assert old.due == 0 and old.report.attempts == 0
    assert smtp_server.count("RCPT", stuck) == 3
    assert "2018-W02" not in unfinished  # no run comes back for it
