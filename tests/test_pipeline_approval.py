"""Approve before send, end to end: scaffolded folder, real SQLite, real aiosmtpd on loopback, a fixed clock.

With ``[editorial] approval = "required"`` a run freezes the issue, mails
the editors one test message each and waits (exit 0); ``digest approve``
records who approved which bytes; the next run sends. A change of the
frozen bytes needs a new approval; ``hold_timeout`` with ``on_timeout``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from digest import pipeline
from digest.models import Delivery, IsoWeek
from digest.pipeline import approval
from digest.pipeline.batches import plan_batches, run_batches
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer

W02 = (IsoWeek(2018, 2),)
KEY = "2018-W02"
EDITORS = ("ed@example.org", "chief@example.net")


def editorial(on_timeout: str = "hold", hold_timeout: str = "48h") -> str:
    return (
        f'\n[editorial]\napproval = "required"\neditors = ["{EDITORS[0]}", "{EDITORS[1]}"]\n'
        f'hold_timeout = "{hold_timeout}"\non_timeout = "{on_timeout}"\n'
    )


def folder(tmp_path: Path, smtp_server: SmtpServer, n: int = 12, **kwargs: str) -> Path:
    path = ws.make_folder(tmp_path, ws.rows(n), port=smtp_server.port, extra=editorial(**kwargs))
    ws.fetch(path)
    return path


def subscribers_got(smtp_server: SmtpServer) -> set[str]:
    return {r for m in smtp_server.messages for r in m.rcpt_tos if r not in EDITORS}


def approve_cli(path: Path, *args: str) -> str:
    done = ws.run_cli(path, "approve", "--week", KEY, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_run_mails_only_the_editors_and_waits_with_exit_0(tmp_path: Path, smtp_server: SmtpServer) -> None:
    config = ws.load(folder(tmp_path, smtp_server))
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        report = pipeline.run(config, store, clock=clock)
        counts = store.delivery_counts(KEY)
        (summary,) = store.issue_summaries()
        again = pipeline.run(config, store, clock=clock)

    assert report.exit_code == 0 and report.sent is None and not report.problems
    (line,) = report.waiting
    assert line.startswith(f"issue {KEY}: waiting for approval since 2018-01-16 18:00 CST")
    assert f"digest approve --week {KEY}" in line
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == sorted(EDITORS)
    for received in smtp_server.messages:
        msg = ws.parse(received.data)
        assert str(msg["Subject"]).startswith("[TEST] ")
        assert msg["X-Digest-Test"] == "1"
        body = ws.text_body(msg)
        assert f"http://127.0.0.1:8025/issues/{KEY}/" in body
        assert f"digest approve --week {KEY}" in body
    assert set(counts.values()) == {0}  # the ledger has nobody
    assert summary.state == "waiting for approval"
    # Once per issue: the second run waits without mailing the editors again.
    assert again.exit_code == 0 and again.waiting and len(smtp_server.messages) == 2


def test_approve_then_the_next_run_sends_and_approving_twice_changes_nothing(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    path = folder(tmp_path, smtp_server)
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        pipeline.run(config, store, clock=ws.fixed_clock())
        frozen = store.frozen_issue(KEY)
        assert frozen is not None
    fp = approval.fingerprint(frozen.variants)

    out = approve_cli(path, "--by", "Ada Editor")
    assert f"fingerprint: sha256:{fp}" in out
    assert "approved by Ada Editor at " in out
    assert re.search(r"^recipients: \d+$", out, re.M)
    assert "variants: " in out and "subject '" in out and f"issue {KEY}: " in out
    with pipeline.open_store(config) as store:
        first = store.approval(KEY, fp)
    twice = approve_cli(path, "--by", "Someone Else")
    assert "already approved by Ada Editor" in twice and "nothing changed" in twice

    with pipeline.open_store(config) as store:
        assert store.approval(KEY, fp) == first  # the first approval stays as it was
        report = pipeline.run(config, store, clock=ws.fixed_clock(ws.RUN_NOW + dt.timedelta(hours=1)))
        (summary,) = store.issue_summaries()
    assert report.exit_code == 0 and not report.waiting
    assert report.sent is not None and report.sent.report.sent > 0
    assert subscribers_got(smtp_server) == {r.email for r in ws.rows(12) if ws.matches(r)}
    assert summary.state == "sent"


def test_a_variant_added_after_approval_is_not_sent_until_approved_again(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    path = folder(tmp_path, smtp_server)
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        pipeline.run(config, store, clock=ws.fixed_clock())
    approve_cli(path)
    later = ws.RUN_NOW + dt.timedelta(hours=1)
    with pipeline.open_store(config) as store:
        pipeline.run(config, store, clock=ws.fixed_clock(later))
    sent_before = subscribers_got(smtp_server)
    # A new reader with a theme mix no variant has: the send renders (and stores) one more variant.
    joiner = ws.Row("joiner@example.org", "Joiner", "AI & tech competition;Cybersecurity")
    ws.write_list(path.parent / "subscribers" / "subscribers.csv", [*ws.rows(12), joiner])
    editors_before = sum(1 for m in smtp_server.messages if set(m.rcpt_tos) & set(EDITORS))

    with pipeline.open_store(config) as store:
        report = pipeline.run(config, store, clock=ws.fixed_clock(later + dt.timedelta(hours=1)))
        (summary,) = store.issue_summaries()
    (line,) = report.waiting
    assert "changed since it was approved" in line and report.exit_code == 0
    assert "joiner@example.org" not in subscribers_got(smtp_server)
    assert sum(1 for m in smtp_server.messages if set(m.rcpt_tos) & set(EDITORS)) == editors_before + 2
    assert summary.state == "waiting for approval"

    again = approve_cli(path)
    assert f"approved by {getpass.getuser()} at " in again  # the OS user, without --by
    with pipeline.open_store(config) as store:
        report = pipeline.run(config, store, clock=ws.fixed_clock(later + dt.timedelta(hours=2)))
    assert not report.waiting
    assert subscribers_got(smtp_server) - sent_before == {"joiner@example.org"}
    assert ws.per_recipient(smtp_server.messages)["joiner@example.org"] == 1


@pytest.mark.parametrize("on_timeout", ["hold", "send"])
def test_after_hold_timeout_send_sends_and_hold_keeps_waiting(
    tmp_path: Path, smtp_server: SmtpServer, on_timeout: str
) -> None:
    config = ws.load(folder(tmp_path, smtp_server, on_timeout=on_timeout))
    with pipeline.open_store(config) as store:
        early = pipeline.run(config, store, clock=ws.fixed_clock())
        before = pipeline.run(config, store, clock=ws.fixed_clock(ws.RUN_NOW + dt.timedelta(hours=47)))
        assert early.waiting and before.waiting and not subscribers_got(smtp_server)
        after = pipeline.run(config, store, clock=ws.fixed_clock(ws.RUN_NOW + dt.timedelta(hours=49)))
        counts = store.delivery_counts(KEY)
    wanted = {r.email for r in ws.rows(12) if ws.matches(r)}
    if on_timeout == "hold":
        (line,) = after.waiting
        assert "hold_timeout 2 days has passed" in line and "on_timeout = 'hold' keeps it waiting" in line
        assert after.exit_code == 0 and after.sent is None
        assert not subscribers_got(smtp_server) and counts[Delivery.SENT] == 0
    else:
        assert not after.waiting and after.sent is not None
        assert any("sent without approval" in w for w in after.sent.problems)
        assert subscribers_got(smtp_server) == wanted and counts[Delivery.SENT] == len(wanted)


def test_send_refuses_an_issue_waiting_for_approval_and_says_how_to_approve(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    path = folder(tmp_path, smtp_server)
    done = ws.run_cli(path, "send", "--week", KEY)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "waiting for approval since" in line and f"digest approve --week {KEY}" in line
    assert not subscribers_got(smtp_server)
    issues = ws.run_cli(path, "issues", "--json")
    assert '"state": "waiting for approval"' in issues.stdout


def test_approve_of_an_issue_not_frozen_is_a_usage_error(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = folder(tmp_path, smtp_server)
    done = ws.run_cli(path, "approve", "--week", KEY)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "not frozen yet" in line
    bad_by = ws.run_cli(path, "approve", "--week", KEY, "--by", "two\nlines")
    assert bad_by.returncode == 2 and "--by" in bad_by.stderr


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('approval = "required"\neditors = ["not an address"]', "editorial.editors"),
        ('approval = "required"\neditors = ["ed@"]', "editorial.editors"),
        ('approval = "required"', "editorial.editors"),
        ('approval = "yes"', "editorial.approval"),
        ('hold_timeout = "48 hours"', "editorial.hold_timeout"),
        ('hold_timeout = "0h"', "editorial.hold_timeout"),
        ('hold_timeout = "-1h"', "editorial.hold_timeout"),
        ("hold_timeout = 48", "editorial.hold_timeout"),
        ('on_timeout = "later"', "editorial.on_timeout"),
        ('on_timout = "send"', "editorial.on_timout"),
    ],
)
def test_hostile_editorial_values_are_one_line_and_exit_2(
    tmp_path: Path, smtp_server: SmtpServer, table: str, key: str
) -> None:
    path = ws.make_folder(tmp_path, ws.rows(2), port=smtp_server.port, extra=f"\n[editorial]\n{table}\n")
    done = ws.run_cli(path, "approve")
    assert done.returncode == 2, done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert key in line


def test_good_editorial_values_load(tmp_path: Path, smtp_server: SmtpServer) -> None:
    config = ws.load(folder(tmp_path, smtp_server, on_timeout="send", hold_timeout="90m"))
    e = config.editorial
    assert (e.approval, e.editors, e.hold_timeout, e.on_timeout) == (
        "required",
        EDITORS,
        dt.timedelta(minutes=90),
        "send",
    )


def test_a_refused_editor_message_is_a_problem_and_the_next_run_mails_again(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    config = ws.load(folder(tmp_path, smtp_server))
    for editor in EDITORS:
        smtp_server.inject("RCPT", 550, recipient=editor)
    with pipeline.open_store(config) as store:
        failed = pipeline.run(config, store, clock=ws.fixed_clock())
        retried = pipeline.run(config, store, clock=ws.fixed_clock(ws.RUN_NOW + dt.timedelta(hours=1)))
    (problem,) = failed.problems
    assert failed.exit_code == 1 and "the test message to the editors did not go out" in problem
    assert retried.exit_code == 0 and retried.waiting
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == sorted(EDITORS)


class _ListQueue:
    """A ``BatchQueue`` that keeps what it is given."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, ...]] = []

    def active(self, issue_key: str) -> int:
        return len(self.batches)

    def put(self, issue_key: str, batches: Sequence[tuple[str, ...]]) -> int:
        self.batches.extend(batches)
        return len(batches)


def test_the_workers_queue_nothing_until_approved(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = folder(tmp_path, smtp_server)
    config = ws.load(path)
    queue = _ListQueue()
    with pipeline.open_store(config) as store:
        waiting = run_batches(config, store, queue, clock=ws.fixed_clock())
        assert queue.batches == [] and waiting.exit_code == 0
        (line,) = waiting.waiting
        assert "waiting for approval since" in line
        built = pipeline.prepare(config, store, W02, ws.RUN_NOW)
        approval.approve(store, built, "ed", ws.RUN_NOW)
        planned = plan_batches(config, store, W02, queue, clock=ws.fixed_clock())
    assert planned.queued > 0 and queue.batches
    assert len(smtp_server.messages) == len(EDITORS)  # planning sends nothing more
