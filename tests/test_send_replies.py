"""Reading SMTP refusals: whose problem a reply is, and a relay that refuses us for everyone.

The classification is checked reply by reply (hostile spellings next to
good ones); the consequences over the real loopback SMTP server: a relay
that refuses our sender marks no one bounced and stops the run, leaving
everyone due again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from digest import pipeline
from digest.errors import SendError
from digest.models import Delivery, IsoWeek, SubscriberStatus
from digest.send.replies import Kind, RefusalWatch, bounced_by, classify
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer

W02 = (IsoWeek(2018, 2),)


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (550, "5.1.1 <a@x.org>: Recipient address rejected: User unknown in virtual mailbox table", Kind.RECIPIENT),
        (550, "5.1.2 bad destination system", Kind.RECIPIENT),
        (550, "5.1.3 bad destination mailbox address syntax", Kind.RECIPIENT),
        (550, "5.1.6 mailbox has moved", Kind.RECIPIENT),
        (550, "5.1.10 recipient address has null MX", Kind.RECIPIENT),
        (550, "5.2.1 mailbox disabled", Kind.RECIPIENT),
        (550, "5.01.001 user unknown", Kind.RECIPIENT),  # a padded code is the same code
        (550, "5.1.7 bad sender mailbox address syntax", Kind.US),
        (550, "5.1.8 sender address rejected: domain not found", Kind.US),
        (553, "5.1.8 <bounce@example.org>: Sender address rejected", Kind.US),
        (550, "5.7.1 message refused as spam", Kind.US),
        (554, "5.7.26 unauthenticated email from example.org is not accepted due to DMARC", Kind.US),
        (550, "5.5.1 protocol error", Kind.US),
        (554, "Relay access denied", Kind.US),
        (550, "5.1.1 relay access denied", Kind.US),  # the words win: no mailbox was judged
        (552, "5.2.2 mailbox full", Kind.OTHER),
        (554, "5.3.4 message too big for system", Kind.OTHER),
        # No enhanced code: conservative.
        (550, "user unknown", Kind.RECIPIENT),
        (550, "No such user here", Kind.RECIPIENT),
        (550, "sender rejected: no such user", Kind.US),
        (550, "blocked: user unknown", Kind.US),
        (550, "rejected", Kind.OTHER),
        (550, "", Kind.OTHER),
        (550, "1.1.1.1 listed", Kind.OTHER),
        (550, "5.1.1" * 200, Kind.OTHER),  # a run of digits is not a code
        (451, "4.1.1 try later: user unknown", Kind.OTHER),  # not permanent: never a bounce either
        (550, "4.1.1 user unknown", Kind.RECIPIENT),  # an enhanced class that contradicts the code: words
        (550, "\x00\r\n5.1.1\tuser\x85unknown", Kind.RECIPIENT),
    ],
)
def test_a_reply_is_about_the_recipient_or_about_us(code: int, text: str, kind: Kind) -> None:
    assert classify(code, text).kind is kind


def test_only_a_recipient_refusal_proves_an_address_gone() -> None:
    assert bounced_by(550, "RCPT refused: 550 5.1.1 <a@x.org>: user unknown")
    assert bounced_by(550, "message refused: 550 no such mailbox")
    assert not bounced_by(550, "RCPT refused: 550 5.1.8 sender address rejected")
    assert not bounced_by(550, "message refused: 550 5.1.8 sender address rejected")
    assert not bounced_by(451, "RCPT refused: 451 4.1.1 user unknown")
    assert not bounced_by(None, "user unknown")


def test_the_watch_trips_on_ten_in_a_row_or_a_fifth_of_the_first_fifty() -> None:
    us = classify(550, "5.1.8 sender address rejected")
    other = classify(550, "5.7.1 spam")
    watch = RefusalWatch()
    for i in range(9):
        assert watch.observe(f"a{i}", us) == []
    assert watch.observe("ok", None) == []  # a success breaks the streak
    assert watch.observe("b", other) == []  # and so does another refusal
    released: set[str] = set()
    for i in range(10):
        released.update(watch.observe(f"c{i}", us))
    # Every one refused for that reason is released (the 11th of the first 50 trips it; the later ones follow).
    assert released == {f"c{i}" for i in range(10)} | {f"a{i}" for i in range(9)}
    assert watch.observe("late", us) == ["late"] and watch.observe("late2", other) == []

    spread = RefusalWatch()
    got: set[str] = set()
    for i in range(50):
        got.update(spread.observe(f"s{i}", us if i % 4 == 0 else None))
    assert got == {f"s{i}" for i in range(0, 50, 4)}  # the 11th of the first 50 trips it, the 12th follows
    streak = RefusalWatch()
    assert [bool(streak.observe(f"u{i}", us)) for i in range(10)] == [False] * 9 + [True]
    calm = RefusalWatch()
    assert all(calm.observe(f"t{i}", us if i % 5 == 0 else None) == [] for i in range(50))  # exactly 20 %


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
def test_a_relay_refusing_our_sender_bounces_no_one_and_stops_the_run(
    tmp_path: Path, smtp_server: SmtpServer, stage: str
) -> None:
    people = ws.rows(60)
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port, connections=2))
    smtp_server.inject(stage, 550, text="5.1.8 <bounce@example.org>: sender address rejected", times=None)
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        report = pipeline.run(config, store, clock=clock)
        status = store.subscriber_status()
        counts = store.delivery_counts("2018-W02")
        due = store.due_deliveries("2018-W02", clock())
        tried = smtp_server.count("MAIL")
        smtp_server.clear_faults()
        again = pipeline.send_issue(config, store, W02, clock=clock)
    wanted = {r.email for r in people if ws.matches(r)}
    assert report.sent is None and report.exit_code == 1
    assert [p.split(": ", 1)[1] for p in report.problems] == [
        "the relay refuses us: 550 5.1.8 <bounce@example.org>: sender address rejected"
    ]
    assert SubscriberStatus.BOUNCED not in status.values()
    assert counts[Delivery.FAILED_PERMANENT] == 0 and counts[Delivery.SENT] == 0
    assert {r.email for r in due} == wanted  # tried or not, everyone is due again
    assert tried < 20  # it stopped early, it did not try the whole list
    assert again.report.sent == len(wanted) and not again.failed


def test_one_domain_that_refuses_us_does_not_hold_back_the_rest_of_the_list(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    picky = [ws.Row(f"a{i:02d}@picky.example.net", "", "") for i in range(12)]  # sorts before r000@...
    people = [*picky, *(r for r in ws.rows(40) if ws.matches(r))]
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1))
    for row in picky:
        smtp_server.inject("RCPT", 550, recipient=row.email, text="5.7.1 refused by local policy", times=None)
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        with pytest.raises(SendError, match=r"the relay refuses us: 550 5\.7\.1 refused by local policy"):
            pipeline.send_issue(config, store, W02, clock=clock)
        assert store.delivery_counts("2018-W02")[Delivery.SENT] == 0
        with pytest.raises(SendError, match="the relay refuses us"):
            pipeline.send_issue(config, store, W02, clock=ws.fixed_clock(ws.RUN_NOW.replace(hour=12)))
        rows = {r.email: r for r in store.deliveries("2018-W02")}
        status = store.subscriber_status()
    others = {r.email for r in people} - {r.email for r in picky}
    assert {e for e, r in rows.items() if r.state is Delivery.SENT} == others  # sent before the picky ones
    assert all(rows[r.email].state is not Delivery.SENT for r in picky)
    assert SubscriberStatus.BOUNCED not in status.values()
    assert set(ws.per_recipient(smtp_server.messages).values()) == {1}
