"""Every entry in exactly one issue: late entries, held weeks, outages, over a real store and SMTP.

The folder's feed is a local file the test rewrites between fetches; ``run``
is ``digest run`` at an injected time; messages go to the aiosmtpd server
on loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from digest import pipeline
from digest.models import IsoWeek
from tests.data.carry.site import PEOPLE, Site, day, eid, messages_for, monday
from tests.fixtures.smtp_server import SmtpServer


def test_an_entry_published_after_its_issue_froze_goes_out_next_week_marked(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    site = Site(tmp_path, smtp_port=smtp_server.port)
    site.publish("a1", day(2018, 2, 2))
    site.publish("a2", day(2018, 2, 4), theme="beta")
    first = site.run(monday(2018, 3))
    assert first.sent is not None and first.sent.issue_key == "2018-W02"
    assert first.sent.report.sent == 2

    # Published on Sunday evening of 2018-W02, seen only on Wednesday of 2018-W03.
    site.publish("late", day(2018, 2, 7, 22), title="Late Sunday story")
    site.publish("b1", day(2018, 3, 2), title="This week story")
    site.fetch(day(2018, 3, 3))
    mark = len(smtp_server.messages)
    second = site.run(monday(2018, 4))

    assert second.sent is not None and second.sent.issue_key == "2018-W03"
    ((subject, html, text),) = messages_for(smtp_server, mark)
    assert "Week 3" in subject and "Week 2" not in subject
    assert "Late Sunday story</a> <span" in html and "· from last week</span>" in html
    assert "* Late Sunday story [2] (from last week)" in text or "* Late Sunday story [1] (from last week)" in text
    assert "This week story" in text and "This week story [1] (from" not in text
    issues = site.frozen()
    assert [e.id for e in issues["2018-W02"].entries].count(issues["2018-W03"].entries[0].id) == 0
    assert {str(w) for _, w in issues["2018-W03"].carried} == {"2018-W02"}


def test_a_week_sent_before_it_ended_says_late_entries_go_out_next_time(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    site = Site(tmp_path, smtp_port=smtp_server.port)
    site.publish("early", day(2018, 3, 1))
    site.fetch(day(2018, 3, 2))
    sent = site.send(IsoWeek(2018, 3), day(2018, 3, 3))  # Wednesday: the week is not over
    (note,) = [p for p in sent.problems if "not over" in p]
    assert "go out with the next issue" in note and "nor in the next" not in note

    site.publish("thursday", day(2018, 3, 4), title="Thursday story")
    site.publish("w4", day(2018, 4, 2))
    mark = len(smtp_server.messages)
    later = site.run(monday(2018, 5))
    assert later.sent is not None and later.sent.issue_key == "2018-W04"
    ((_, html, text),) = messages_for(smtp_server, mark)
    assert "Thursday story" in text and "(from last week)" in text
    assert "from last week" in html


def test_a_thin_week_is_held_and_rolls_into_the_next_issue(tmp_path: Path, smtp_server: SmtpServer) -> None:
    site = Site(tmp_path, smtp_port=smtp_server.port, issue="min_entries = 3")
    site.publish("w2", day(2018, 2, 3), title="Lonely story")
    held = site.run(monday(2018, 3))
    assert held.sent is None and "held" in held.skipped and "2018-W05 at the latest" in held.skipped
    assert held.exit_code == 0 and smtp_server.messages == []
    config = site.config
    with pipeline.open_store(config) as store:
        assert [k for k, _, n in store.held_issues()] == ["2018-W02"]

    site.publish("w3a", day(2018, 3, 2))
    site.publish("w3b", day(2018, 3, 3), theme="beta")
    rolled = site.run(monday(2018, 4))
    assert rolled.sent is not None and rolled.sent.issue_key == "2018-W03"
    ((subject, html, text),) = messages_for(smtp_server)
    assert "Week 3" in subject
    assert "Lonely story" in html and "(from last week)" in text
    with pipeline.open_store(config) as store:
        assert [k for k, _, _ in store.held_issues()] == ["2018-W02"]  # the record of the hold stays
        assert store.frozen_issue("2018-W02") is None
        assert {r.entry_id: r.issue_key for r in store.issue_entries()} == {
            eid(g): "2018-W03" for g in ("w2", "w3a", "w3b")
        }


def test_after_max_hold_weeks_whatever_there_is_goes_out(tmp_path: Path, smtp_server: SmtpServer) -> None:
    site = Site(tmp_path, smtp_port=smtp_server.port, issue="min_entries = 5\nmax_hold_weeks = 2")
    site.publish("w1", day(2018, 1, 3), title="Oldest story")
    assert site.run(monday(2018, 2)).sent is None  # 2018-W01: 1 entry, held
    site.publish("w2", day(2018, 2, 3), title="Middle story")
    second = site.run(monday(2018, 3))  # 2018-W02: 2 entries, the oldest 1 week old: held
    assert second.sent is None and "held" in second.skipped
    third = site.run(monday(2018, 4))  # 2018-W03: nothing new, the oldest is 2 weeks old: out it goes
    assert third.sent is not None and third.sent.issue_key == "2018-W03"
    ((subject, _, text),) = messages_for(smtp_server)
    assert "Week 3" in subject
    assert "Oldest story [2] (from 2018-W01)" in text or "Oldest story [1] (from 2018-W01)" in text
    assert "(from last week)" in text  # the 2018-W02 one
    assert len(smtp_server.messages) == len(PEOPLE)


@pytest.mark.parametrize(("hold", "carried", "expired"), [(3, 3, 2), (6, 5, 0)])
def test_after_an_outage_one_run_sends_one_issue_with_the_unsent_entries(
    tmp_path: Path, smtp_server: SmtpServer, hold: int, carried: int, expired: int
) -> None:
    site = Site(tmp_path, smtp_port=smtp_server.port, issue=f"max_hold_weeks = {hold}")
    site.publish("w01", day(2018, 1, 3))
    assert site.run(monday(2018, 2)).sent is not None  # the digest runs...
    for week in range(2, 8):  # ...then the server is down for five Mondays (2018-W03 to W07)
        site.publish(f"w{week:02d}", day(2018, week, 3), title=f"Story of week {week}")
    site.fetch(day(2018, 5, 3))  # someone ran `digest fetch` by hand meanwhile
    mark = len(smtp_server.messages)
    back = site.run(monday(2018, 8))

    assert back.resumed == [] and back.sent is not None
    assert back.sent.issue_key == "2018-W07"
    assert len(smtp_server.messages) - mark == len(PEOPLE)  # one issue, not five
    issue = site.frozen()["2018-W07"]
    assert len(issue.entries) == 1 + carried
    assert len(issue.carried) == carried
    notes = [p for p in back.sent.problems if "expired" in p]
    if expired:
        (note,) = notes
        assert note.startswith("2 unsent entries of 2018-W02, 2018-W03 expired")
        with pipeline.open_store(site.config) as store:
            assert [r.entry_id for r in store.issue_entries() if r.expired] == [eid("w02"), eid("w03")]
    else:
        assert notes == []
    # The next Monday sends only what is new, never the carried ones again.
    site.publish("w08", day(2018, 8, 2))
    nxt = site.run(monday(2018, 9))
    assert nxt.sent is not None and [e.id for e in site.frozen()["2018-W08"].entries] == [eid("w08")]


def test_explicit_send_of_a_week_carries_too_and_ages_count_from_that_week(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    site = Site(tmp_path, smtp_port=smtp_server.port, issue="max_hold_weeks = 1")
    site.publish("w1", day(2018, 1, 3))
    site.fetch(day(2018, 1, 4))
    assert site.send(IsoWeek(2018, 1), monday(2018, 2)).report.sent == len(PEOPLE)
    site.publish("w1-late", day(2018, 1, 6), title="Late for week one")
    site.publish("w2", day(2018, 2, 3))
    site.fetch(day(2018, 2, 4))
    # Sent months later: the hold window is measured from 2018-W02, not from today.
    summary = site.send(IsoWeek(2018, 2), monday(2018, 20))
    assert summary.issue_key == "2018-W02"
    ((subject, _, text),) = messages_for(smtp_server, len(PEOPLE))
    assert "Week 2" in subject and "Late for week one" in text and "(from last week)" in text
    assert not [p for p in summary.problems if "expired" in p]
