"""Sending a whole issue end to end: scaffolded folder, real SQLite, real aiosmtpd on loopback.

Who gets what (themes, no match), that a repeated send or run sends nothing,
that a crafted feed title cannot add headers or recipients, and what SMTP
faults do to the report and the exit code of ``digest send``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import pytest

from digest import pipeline
from digest.config import load_config
from digest.errors import ConfigError
from digest.models import Delivery, IsoWeek, SubscriberStatus
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import DISCONNECT_AFTER_DOT, SmtpServer

W02 = (IsoWeek(2018, 2),)
THEMES = ("AI & tech competition", "Cybersecurity", "Internet governance", "Digital economy")


def test_each_matching_subscriber_gets_one_message_with_only_their_themes(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    people = ws.rows(90)
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port, connections=3))
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        summary = pipeline.send_issue(config, store, W02, clock=clock)
        counts = store.delivery_counts("2018-W02")

    wanted = {r.email for r in people if ws.matches(r)}
    assert 0 < len(wanted) < len(people)
    got = ws.per_recipient(smtp_server.messages)
    assert set(got) == wanted
    assert set(got.values()) == {1}
    assert summary.no_match == len(people) - len(wanted)
    assert (summary.planned, summary.report.sent, summary.failed) == (len(wanted), len(wanted), False)
    assert counts[Delivery.SENT] == len(wanted)
    assert sum(counts.values()) == len(wanted)

    by_row = {r.email: r for r in people}
    for received in smtp_server.messages:
        (rcpt,) = received.rcpt_tos
        row = by_row[rcpt]
        msg = ws.parse(received.data)
        assert msg["To"].addresses[0].addr_spec == rcpt
        if row.name:
            assert msg["To"].addresses[0].display_name == row.name
        body = ws.text_body(msg)
        shown = {t for t in THEMES if t.upper() in body}
        expected = set(THEMES) if not row.chosen else set(row.chosen) & set(THEMES)
        assert shown == expected, (rcpt, row.themes)
        assert f"This message was sent to {rcpt}." in body


def test_a_second_send_of_the_same_issue_sends_nothing(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(40)
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port))
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        first = pipeline.send_issue(config, store, W02, clock=clock)
        before = len(smtp_server.messages)
        second = pipeline.send_issue(config, store, W02, clock=clock)
    assert first.report.sent == before > 0
    assert (second.planned, second.due, second.report.sent, second.report.attempts) == (0, 0, 0, 0)
    assert len(smtp_server.messages) == before
    assert smtp_server.count("MAIL") == before


def test_run_twice_in_the_same_week_sends_the_last_complete_week_once(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(30)
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port))
    with pipeline.open_store(config) as store:
        first = pipeline.run(config, store, clock=ws.fixed_clock())
        later = ws.fixed_clock(ws.RUN_NOW.replace(day=18))  # Thursday of the same week
        second = pipeline.run(config, store, clock=later)
    assert first.sent is not None and second.sent is not None
    assert first.sent.issue_key == second.sent.issue_key == "2018-W02"
    assert first.exit_code == second.exit_code == 0
    assert first.sent.report.sent == sum(ws.matches(r) for r in people)
    assert second.sent.report.sent == second.sent.due == 0
    assert set(ws.per_recipient(smtp_server.messages).values()) == {1}


CRAFTED_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Crafted</title><link>https://crafted.example.org/</link>
<description>x</description>
<item>
  <title>Ransomware alert&#13;&#10;Bcc: victim@attacker.example&#13;&#10;X-Injected: yes</title>
  <link>https://crafted.example.org/a</link>
  <guid isPermaLink="false">crafted-1</guid>
  <pubDate>Tue, 09 Jan 2018 12:00:00 +0000</pubDate>
  <category>Cybersecurity</category>
  <description>Ransomware news.</description>
</item>
</channel></rss>
"""

SUBJECT_WITH_TITLES = (
    "{{ title }}: {% for w in issue.weeks %}{% for s in w.sections %}{% for e in s.entries %}"
    "{{ e.title }} | {% endfor %}{% endfor %}{% endfor %}"
)


def test_a_feed_title_with_crlf_cannot_add_headers_or_recipients(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(12)
    source = '\n[[sources]]\nname = "Crafted"\nkind = "feed"\nurl = "sources/crafted.rss.xml"\n'
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, extra=source)
    (tmp_path / "sources" / "crafted.rss.xml").write_text(CRAFTED_FEED, encoding="utf-8")
    (tmp_path / "templates" / "subject.txt.j2").write_text(SUBJECT_WITH_TITLES, encoding="utf-8")
    config = ws.load(path)
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        lines = pipeline.fetch_all(config, store, clock())
        crafted = [e for e in store.entries() if e.source == "Crafted"]
        summary = pipeline.send_issue(config, store, W02, clock=clock)
    assert [line.counts.new for line in lines if line.result.source == "Crafted"] == [1]
    assert len(crafted) == 1 and "Bcc: victim@attacker.example" in crafted[0].title

    assert summary.report.sent == len(smtp_server.messages) > 0
    allowed = {r.email for r in people}
    assert all(set(m.rcpt_tos) <= allowed for m in smtp_server.messages)
    assert smtp_server.count("RCPT") == summary.report.sent
    carrying = 0
    for received in smtp_server.messages:
        lines_ = ws.header_lines(received.data)
        names = [line.split(":", 1)[0].lower() for line in lines_]
        assert names.count("subject") == 1
        assert "bcc" not in names and "x-injected" not in names
        subject = ws.parse(received.data)["Subject"]
        assert "\r" not in subject and "\n" not in subject
        if "Ransomware alert" in subject:
            carrying += 1
            assert "Ransomware alert Bcc: victim" in subject  # kept as text, on the one line
    assert carrying > 0


def test_smtp_faults_retry_the_temporary_and_report_the_permanent(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(10)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, connections=2)
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, ws.RUN_NOW)
    later, refused = "r002@example.org", "r003@example.org"
    smtp_server.inject("RCPT", 451, recipient=later)
    smtp_server.inject("RCPT", 550, recipient=refused, times=None)

    done = ws.run_cli(path, "send", "--week", ws.WEEK)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed permanently" in done.stdout
    assert refused in done.stdout and "550" in done.stdout
    assert "Traceback" not in done.stderr

    got = ws.per_recipient(smtp_server.messages)
    wanted = {r.email for r in people if ws.matches(r)}
    assert {later, refused} <= wanted
    assert set(got) == wanted - {refused}
    assert set(got.values()) == {1}
    assert smtp_server.count("RCPT", later) == 2
    assert smtp_server.count("RCPT", refused) == 1  # permanent: never retried
    with pipeline.open_store(config) as store:
        (row,) = [r for r in store.deliveries("2018-W02") if r.email == refused]
        assert (row.state, row.last_code) == (Delivery.FAILED_PERMANENT, 550)
        assert store.deliveries("2018-W02", Delivery.SENT)[0].state is Delivery.SENT

    again = ws.run_cli(path, "send", "--week", ws.WEEK)
    assert again.returncode == 0, again.stdout + again.stderr
    assert smtp_server.count("RCPT", refused) == 1
    assert set(ws.per_recipient(smtp_server.messages).values()) == {1}


def test_a_mailbox_that_does_not_exist_is_marked_bounced_and_skipped_later(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    people = ws.rows(6)
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1))
    gone, blocked = "r000@example.org", "r001@example.org"
    smtp_server.inject("RCPT", 550, recipient=gone, text="5.1.1 <r000@example.org>: user unknown")
    smtp_server.inject("RCPT", 550, recipient=blocked, text="5.7.1 message refused as spam")
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        pipeline.send_issue(config, store, W02, clock=clock)
        status = store.subscriber_status()
        assert status.get(gone) is SubscriberStatus.BOUNCED
        assert status.get(blocked, SubscriberStatus.ACTIVE) is SubscriberStatus.ACTIVE  # policy, not a bounce
        issue = pipeline.make_issue(config, store, (IsoWeek(2018, 1),))
        listed = {s.email for s, _ in pipeline.audience(config, store, issue).assignments}
        week_one = pipeline.send_issue(config, store, (IsoWeek(2018, 1),), clock=clock)
    assert gone not in listed and blocked in listed
    assert week_one.report.sent > 0
    assert smtp_server.count("RCPT", gone) == 1  # never asked for again


def test_summary_counts_a_permanent_refusal_as_failed(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(6)
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1))
    config = dataclasses.replace(config, sender=dataclasses.replace(config.sender, max_attempts=2))
    smtp_server.inject("DATA", 554, recipient="r000@example.org")
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        summary = pipeline.send_issue(config, store, W02, clock=clock)
    assert summary.failed
    assert summary.report.failed_permanent == 1
    assert [p[:2] for p in summary.report.problems] == [("r000@example.org", 554)]


def test_a_message_lost_after_the_dot_is_reported_unknown_and_not_resent(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    people = ws.rows(8)
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1))
    lost = "r001@example.org"
    smtp_server.inject("DATA", DISCONNECT_AFTER_DOT, recipient=lost)
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        first = pipeline.send_issue(config, store, W02, clock=clock)
        second = pipeline.send_issue(config, store, W02, clock=clock)
    assert first.failed and first.report.unknown == 1
    assert first.unknown == second.unknown == (lost,)
    assert second.report.attempts == 0
    assert len(smtp_server.received(lost)) == 1  # the server took it once; nobody resends it
    got = ws.per_recipient(smtp_server.messages)
    assert set(got) == {r.email for r in people if ws.matches(r)}
    assert set(got.values()) == {1}


def test_a_reader_who_joins_after_the_freeze_gets_the_frozen_issue(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = [r for r in ws.rows(10) if r.themes != "Internet governance;Digital economy"]
    path = ws.make_folder(tmp_path, people, port=smtp_server.port)
    config = ws.load(path)
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        first = pipeline.send_issue(config, store, W02, clock=clock)
        assert first.report.sent == len(smtp_server.messages) > 0
        # New reader with a theme mix no variant had; and a new entry appears.
        feed = tmp_path / "sources" / "cyber-policy.rss.xml"
        late = feed.read_text(encoding="utf-8").replace("Cross-border e-commerce rules", "LATE e-commerce rules")
        feed.write_text(late.replace("cyber-policy-2018-0112-wto", "late-wto"), encoding="utf-8")
        newcomer = ws.Row("newcomer@example.org", "New Comer", "Digital economy")
        ws.write_list(config.subscribers_dir / "subscribers.csv", [*people, newcomer])
        pipeline.fetch_all(config, store, clock())
        assert any(e.title.startswith("LATE") for e in store.entries())
        second = pipeline.send_issue(config, store, W02, clock=clock)
    assert (second.planned, second.report.sent) == (1, 1)
    (received,) = smtp_server.received(newcomer.email)
    msg = ws.parse(received.data)
    body = ws.text_body(msg)
    assert "DIGITAL ECONOMY" in body and "CYBERSECURITY" not in body
    assert "Cross-border e-commerce rules" in body and "LATE" not in body
    # Its variant was not frozen, so its subject comes from today's templates (see the note in prepare).


def test_sending_without_a_secret_is_refused_before_anything_changes(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = ws.make_folder(tmp_path, ws.rows(3), port=smtp_server.port)
    config = load_config(path, env={})  # no DIGEST_SECRET
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, ws.RUN_NOW)
        with pytest.raises(ConfigError, match=r"digest\.secret: not set"):
            pipeline.send_issue(config, store, W02, clock=ws.fixed_clock())
        assert store.frozen_issue("2018-W02") is None
        assert store.deliveries("2018-W02") == []
        dry = pipeline.send_issue(config, store, W02, clock=ws.fixed_clock(), dry_run=True)
    assert dry.report.sent > 0  # a dry run never leaves the machine: it may use the stand-in key
    assert smtp_server.messages == []


def test_an_issue_left_unfinished_is_finished_by_the_next_run(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(6)
    config = ws.load(ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1))
    # Retried for ten days (not the default three): the next run is a week later.
    sender = dataclasses.replace(config.sender, max_attempts=1, retry_for=dt.timedelta(days=10))
    config = dataclasses.replace(config, sender=sender)
    smtp_server.inject("RCPT", 451, times=None)  # the relay is having a bad Monday
    monday = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        first = pipeline.run(config, store, clock=monday)
        assert first.sent is not None and first.sent.report.sent == 0
        assert first.exit_code == 1
        assert store.unfinished_issues(dt.datetime(2018, 1, 23, tzinfo=dt.UTC)) == ["2018-W02"]

        smtp_server.clear_faults()
        # A week later the due issue is 2018-W03; the run first finishes 2018-W02.
        later = pipeline.run(config, store, clock=ws.fixed_clock(dt.datetime(2018, 1, 23, 10, 0, tzinfo=dt.UTC)))
        assert [s.issue_key for s in later.resumed] == ["2018-W02"]
        assert later.resumed[0].report.sent == len([r for r in people if ws.matches(r)])
        assert store.unfinished_issues(dt.datetime(2018, 1, 30, tzinfo=dt.UTC)) == []
    w02 = ws.per_recipient([m for m in smtp_server.messages if b"Message-ID: <2018-W02." in m.data])
    assert set(w02) == {r.email for r in people if ws.matches(r)}
    assert set(w02.values()) == {1}


def test_retry_failed_sends_again_to_those_a_misconfigured_relay_refused(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    people = ws.rows(4)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1)
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, ws.RUN_NOW)
    refused = next(r.email for r in people if ws.matches(r))
    smtp_server.inject("RCPT", 550, recipient=refused, text="5.7.0 policy says no")
    first = ws.run_cli(path, "send", "--week", ws.WEEK)
    assert first.returncode == 1
    again = ws.run_cli(path, "send", "--week", ws.WEEK)
    assert again.returncode == 0 and "nothing due" in again.stdout and "failed-permanent" in again.stdout
    assert "--retry-failed" in again.stdout
    retried = ws.run_cli(path, "send", "--week", ws.WEEK, "--retry-failed")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert smtp_server.count("RCPT", refused) == 2
    assert ws.per_recipient(smtp_server.messages)[refused] == 1


def test_sending_a_week_that_is_not_over_warns(tmp_path: Path, smtp_server: SmtpServer) -> None:
    config = ws.load(ws.make_folder(tmp_path, ws.rows(3), port=smtp_server.port))
    clock = ws.fixed_clock()  # Tuesday of 2018-W03
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        current = pipeline.send_issue(config, store, (IsoWeek(2018, 3),), clock=clock)
        finished = pipeline.send_issue(config, store, W02, clock=clock)
    assert any("2018-W03 is not over yet" in p for p in current.problems)
    assert not any("not over" in p for p in finished.problems)


# --- personal values: the subject is filled; feed text places no one's values -----------------

PERSONAL_SUBJECT = "{{ greeting }} {{ title }} for {{ name }} — {{ issue.weeks_label }}\n"

TOKEN_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Tokens</title><link>https://evil.example.org/</link>
<description>x</description>
<item>
  <title>Cybersecurity prize for DIGESTxNAMEx7f3a DIGEDIGESTxEMAILx7f3aSTxEMAILx7f3a</title>
  <link>https://evil.example.org/track?who=DIGESTxEMAILx7f3a&amp;u=DIGESTxUNSUBx7f3a</link>
  <guid isPermaLink="false">tokens-1</guid>
  <pubDate>Tue, 09 Jan 2018 12:00:00 +0000</pubDate>
  <category>Cybersecurity</category>
  <description>&lt;p&gt;&amp;#68;IGESTxEMAILx7f3a and &amp;#85;
    &lt;a href="https://evil.example.org/?u=&amp;#68;IGESTxUNSUBx7f3a"&gt;claim&lt;/a&gt;
    D&lt;b&gt;&lt;/b&gt;IGESTxUNSUBx7f3a&lt;/p&gt;</description>
</item>
</channel></rss>
"""


def test_subject_placeholders_are_filled_in_sent_mail(tmp_path: Path, smtp_server: SmtpServer) -> None:
    from digest.compose.headers import MAX_SUBJECT, clean_text
    from digest.placeholders import greeting

    people = ws.rows(16)
    source = '\n[[sources]]\nname = "Tokens"\nkind = "feed"\nurl = "sources/tokens.rss.xml"\n'
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, extra=source)
    (tmp_path / "sources" / "tokens.rss.xml").write_text(TOKEN_FEED, encoding="utf-8")
    (tmp_path / "templates" / "subject.txt.j2").write_text(PERSONAL_SUBJECT, encoding="utf-8")
    config = ws.load(path)
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        summary = pipeline.send_issue(config, store, W02, clock=clock)
        urls = {
            s.email: pipeline.recipient(config, s).unsubscribe_url
            for s, _ in pipeline.audience(config, store, pipeline.make_issue(config, store, W02)).assignments
        }
    assert summary.report.sent == len(smtp_server.messages) > 0
    names = {r.email: r.name for r in people}
    carrying = 0
    for received in smtp_server.messages:
        (rcpt,) = received.rcpt_tos
        msg = ws.parse(received.data)
        name = names[rcpt]
        expected = f"{greeting(name)} Cyber Weekly for {name} — Week 2 · 8–14 January 2018"
        assert str(msg["Subject"]) == clean_text(expected, MAX_SUBJECT)
        assert re.search(rb"X[0-9a-f]{32}", received.data) is None  # no token left anywhere
        text_part = ws.text_body(msg).replace("\r\n", "\n")
        html_part = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
        # The feed's look-alikes stay text; the address and the link are only where the templates put them.
        assert text_part.count(rcpt) == 1 and html_part.count(rcpt) == 1
        assert text_part.count(urls[rcpt]) == 1 and html_part.count(urls[rcpt]) == 1
        if "Cybersecurity prize for" in text_part:
            carrying += 1
            assert "DIGEDIGESTxEMAILx7f3aSTxEMAILx7f3a" in text_part
    assert carrying > 0
