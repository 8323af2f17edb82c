"""One issue's send over the real loopback SMTP server: retries that end, old issues, lists that change.

Each test drives ``pipeline.send_issue`` (or ``run``) with a fixed clock
that the test moves, against a real SQLite file and aiosmtpd server.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from digest import pipeline
from digest.config import Config
from digest.models import Delivery, IsoWeek, Outgoing, SubscriberStatus
from digest.pipeline.deliver import _StillSubscribed, human
from digest.store import Store
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


def _stuck_relay(config: Config, smtp_server: SmtpServer, *, recipient: str | None = None) -> Config:
    """One try per run and a long ``retry_for``: refused rows stay due from run to run."""
    smtp_server.inject("RCPT", 451, recipient=recipient, text="4.3.0 try again later", times=None)
    sender = dataclasses.replace(config.sender, max_attempts=1, retry_for=dt.timedelta(days=365))
    return dataclasses.replace(config, sender=sender)


def test_a_resumed_old_issue_is_not_sent_to_people_who_joined_after_it(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = [r for r in ws.rows(6) if ws.matches(r)]
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1)
    config = _stuck_relay(ws.load(path), smtp_server, recipient="r000@example.org")
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, ws.RUN_NOW)
        pipeline.send_issue(config, store, W02, clock=ws.fixed_clock())
        # Seven weeks later the relay is back and someone new has joined.
        newcomer = ws.Row("late@example.org", "Late Reader", "")
        ws.write_list(tmp_path / "subscribers" / "subscribers.csv", [*people, newcomer])
        smtp_server.clear_faults()
        later = ws.fixed_clock(dt.datetime(2018, 3, 6, 10, 0, tzinfo=dt.UTC))
        report = pipeline.run(config, store, clock=later)
        w02 = {r.email for r in store.deliveries("2018-W02")}
    assert [s.issue_key for s in report.resumed] == ["2018-W02"]
    assert report.resumed[0].report.sent == 1 and report.resumed[0].planned == 0
    assert newcomer.email not in w02 and w02 == {r.email for r in people}
    got = [ws.parse(m.data)["Subject"] for m in smtp_server.received(newcomer.email)]
    assert len(got) <= 1 and all("Week 2," not in str(s) for s in got)  # at most the current issue
    assert len(smtp_server.received("r000@example.org")) == 1


def test_a_list_cut_short_stops_the_send_and_people_who_come_back_are_planned_again(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    people = [r for r in ws.rows(24) if ws.matches(r)]
    listing = tmp_path / "subscribers" / "subscribers.csv"
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, connections=2)
    # The command below runs on today's clock: rows first tried in 2018 must still be retried.
    path.write_text(path.read_text("utf-8").replace("[sender]\n", '[sender]\nretry_for = "3650d"\n', 1), "utf-8")
    config = _stuck_relay(ws.load(path), smtp_server)
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, ws.RUN_NOW)
        pipeline.send_issue(config, store, W02, clock=ws.fixed_clock())  # the relay refuses everyone: all due
        smtp_server.clear_faults()
        ws.write_list(listing, people[:5])  # a partial write: the file stops after five rows
        before = store.delivery_counts("2018-W02")
    cut = ws.run_cli(path, "send", "--week", ws.WEEK)
    assert cut.returncode == 1, cut.stdout + cut.stderr
    assert cut.stderr.count("\n") == 1 and "lost" in cut.stderr and "--accept-list-change" in cut.stderr
    assert smtp_server.messages == []
    with pipeline.open_store(config) as store:
        assert store.delivery_counts("2018-W02") == before  # no one skipped
        hour = ws.fixed_clock(ws.RUN_NOW + dt.timedelta(hours=1))
        accepted = pipeline.send_issue(config, store, W02, clock=hour, accept_list_change=True)
        skipped = {r.email for r in store.deliveries("2018-W02", Delivery.SKIPPED)}
        ws.write_list(listing, people)  # the list is whole again, still in the issue's week
        back = pipeline.send_issue(config, store, W02, clock=ws.fixed_clock(ws.RUN_NOW + dt.timedelta(hours=2)))
        counts = store.delivery_counts("2018-W02")
    assert accepted.report.sent == 5 and skipped == {r.email for r in people[5:]}
    assert back.report.sent == len(people) - 5
    assert counts[Delivery.SENT] == len(people)
    assert set(ws.per_recipient(smtp_server.messages).values()) == {1}


def test_the_still_subscribed_check_sees_changes_from_the_history_and_a_full_reread(tmp_path: Path) -> None:
    key, now = "2018-W02", ws.RUN_NOW
    with Store.open(f"sqlite:///{tmp_path / 'digest.db'}", now=now) as store:
        store.plan_deliveries(key, [(f"r{i}@x.org", "all") for i in range(4)], now)
        store.set_status("r0@x.org", SubscriberStatus.BOUNCED, now, "bounce")
        store.set_status("r3@x.org", SubscriberStatus.ACTIVE, now, "import")
        check = _StillSubscribed(store, key, lambda: now, every=1, interval=3600.0, full=3600.0)

        def wanted(email: str) -> bool:
            return check(Outgoing(key, email, "<id@x.org>", b""))

        assert [wanted(f"r{i}@x.org") for i in range(4)] == [False, True, True, True]
        # Mid-send: an unsubscribe (in the history) is seen at the next check; so is a re-activation.
        store.set_status("R1@x.org", SubscriberStatus.UNSUBSCRIBED, now, "link")
        store.reactivate("r0@x.org", now, "fixed mailbox")
        assert wanted("r1@x.org") is False and wanted("r0@x.org") is True and wanted("r2@x.org") is True
        skipped = {r.email: r.last_error for r in store.deliveries(key, Delivery.SKIPPED)}
        assert skipped == {"r0@x.org": "bounced", "r1@x.org": "unsubscribed"}
        # A status erased (no history: a confirmed sign-up, an erasure) is read again before a skip.
        store.set_status("r2@x.org", SubscriberStatus.UNSUBSCRIBED, now, "link")
        store.forget("r2@x.org", now)
        assert wanted("r2@x.org") is True
        # A change the history's tail missed is found by the full re-read.
        store.set_status("r3@x.org", SubscriberStatus.COMPLAINED, now, "report")
        check.mark = store.status_mark()
        assert wanted("r3@x.org") is True
        check.full = 0.0
        assert wanted("r3@x.org") is False
