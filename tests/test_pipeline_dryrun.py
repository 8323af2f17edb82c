"""A dry run of a frozen issue: the frozen variants, only the rows a send would send now, no change."""

from __future__ import annotations

import dataclasses
import mailbox
from pathlib import Path

from digest import pipeline
from digest.models import IsoWeek
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer

W02 = (IsoWeek(2018, 2),)


def test_a_dry_run_of_a_frozen_issue_sends_its_frozen_variants_to_the_due_rows_only(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    people = [r for r in ws.rows(8) if ws.matches(r)]
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1))
    config = dataclasses.replace(config, sender=dataclasses.replace(config.sender, max_attempts=1))
    due = "r002@example.org"
    smtp_server.inject("RCPT", 451, recipient=due, text="4.3.0 try again later")
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        first = pipeline.send_issue(config, store, W02, clock=clock)
        subject = str(ws.parse(smtp_server.messages[0].data)["Subject"])
        (tmp_path / "templates" / "subject.txt.j2").write_text("CHANGED {{ title }}", encoding="utf-8")
        before = [(r.email, r.state, r.attempts) for r in store.deliveries("2018-W02")]
        sent_before = len(smtp_server.messages)
        later = ws.fixed_clock(ws.RUN_NOW.replace(hour=12))
        dry = pipeline.send_issue(config, store, W02, clock=later, dry_run=True)
        after = [(r.email, r.state, r.attempts) for r in store.deliveries("2018-W02")]
    assert first.report.failed_temporary == 1
    assert dry.outbox is not None
    box = [ws.parse(bytes(m)) for m in mailbox.Maildir(dry.outbox, factory=None, create=False)]
    assert [m["To"].addresses[0].addr_spec for m in box] == [due]  # only what a send would send now
    assert str(box[0]["Subject"]) == subject and "CHANGED" not in subject  # the frozen variant
    assert (dry.planned, dry.report.sent) == (1, 1)
    assert after == before and len(smtp_server.messages) == sent_before  # nothing changed, nothing sent
