"""``digest send`` as separate processes: killed mid-send and re-run, and two at once.

The sends are slowed with ``rate`` so a kill or a second process lands
while the first is still sending; the test waits on what the loopback SMTP
server has received, never on the clock.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from digest import pipeline
from digest.models import Delivery
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer

LATE_ITEM = """    <item>
      <title>Late-breaking ransomware item</title>
      <link>https://cyber-policy.example.org/2018/01/late</link>
      <guid isPermaLink="false">cyber-policy-2018-0113-late</guid>
      <pubDate>Sat, 13 Jan 2018 09:00:00 +0000</pubDate>
      <category>Cybersecurity</category>
      <description>Added after the issue went out.</description>
    </item>
"""


def start_send(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ws.digest_cmd(config, "send", "--week", ws.WEEK, *args),
        env=ws.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    """Poll until ``condition`` holds; fail if ``proc`` ended first (a guard, not a timing check)."""
    deadline = time.monotonic() + 60
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the send ended before {what}: {proc.returncode}\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def subjects(server: SmtpServer) -> dict[str, str]:
    return {m.rcpt_tos[0]: str(ws.parse(m.data)["Subject"]) for m in server.messages}


def test_killed_send_resumes_the_frozen_issue_and_sends_no_one_twice(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(60)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, rate=20, connections=2)
    wanted = {r.email for r in people if ws.matches(r)}
    ws.fetch(path)

    proc = start_send(path)
    wait_for(lambda: len(smtp_server.messages) >= 12, proc, "12 messages arrived")
    proc.kill()
    proc.wait()
    before = subjects(smtp_server)
    assert 12 <= len(before) < len(wanted)
    first_subject = next(iter(before.values()))
    assert "Week 2" in first_subject and "CHANGED" not in first_subject

    # Between the crash and the re-run a new entry arrives and the subject template changes.
    feed = tmp_path / "sources" / "cyber-policy.rss.xml"
    feed.write_text(feed.read_text(encoding="utf-8").replace("  </channel>", LATE_ITEM + "  </channel>"), "utf-8")
    (tmp_path / "templates" / "subject.txt.j2").write_text("CHANGED {{ title }}", encoding="utf-8")
    ws.fetch(path)

    again = ws.run_cli(path, "send", "--week", ws.WEEK)
    assert "another digest run" not in again.stderr

    config = ws.load(path)
    with pipeline.open_store(config) as store:
        assert any(e.title == "Late-breaking ransomware item" for e in store.entries())
        rows = {r.email: r for r in store.deliveries("2018-W02")}
    sent = {e for e, r in rows.items() if r.state is Delivery.SENT}
    unknown = {e for e, r in rows.items() if r.state is Delivery.UNKNOWN}
    assert set(rows) == wanted
    assert sent | unknown == wanted
    assert len(unknown) <= 2  # at most one claim in flight per connection
    # A run that leaves rows in doubt fails (exit 1) and names them, with the cause.
    assert again.returncode == (1 if unknown else 0), again.stdout + again.stderr
    if unknown:
        assert f"{len(unknown)} message(s) in state 'unknown'" in again.stdout
        for email in unknown:
            assert f"    {email}: in doubt: the process stopped while sending" in again.stdout

    got = ws.per_recipient(smtp_server.messages)
    assert max(got.values()) == 1
    assert sent <= set(got) <= wanted
    for email in unknown:
        assert smtp_server.count("RCPT", email) <= 1  # not tried again by the re-run
    # The same frozen issue all along: one subject, and no sign of the late entry.
    assert set(subjects(smtp_server).values()) == {first_subject}
    assert all(b"Late-breaking" not in m.data for m in smtp_server.messages)


def test_a_second_send_exits_at_once_while_the_first_runs(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(40)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1)
    wanted = {r.email for r in people if ws.matches(r)}
    ws.fetch(path)
    gate = ws.Gate(smtp_server, after=3)

    first = start_send(path)
    try:
        wait_for(gate.waiting.is_set, first, "the first send is mid-way")
        second = ws.run_cli(path, "send", "--week", ws.WEEK)
        assert first.poll() is None
    finally:
        gate.open()
    assert second.returncode == 1, second.stdout + second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "another digest run is sending" in lines[0], second.stderr
    assert second.stdout == ""
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err

    got = ws.per_recipient(smtp_server.messages)
    assert set(got) == wanted
    assert set(got.values()) == {1}


def test_two_sends_started_together_with_wait_both_finish(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(30)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, rate=40, connections=2)
    wanted = {r.email for r in people if ws.matches(r)}
    ws.fetch(path)

    procs = [start_send(path, "--wait"), start_send(path, "--wait")]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs

    got = ws.per_recipient(smtp_server.messages)
    assert set(got) == wanted
    assert set(got.values()) == {1}
    assert smtp_server.count("MAIL") == len(wanted)
    with pipeline.open_store(ws.load(path)) as store:
        assert store.delivery_counts("2018-W02")[Delivery.SENT] == len(wanted)
