"""``digest send`` stopped by SIGTERM, and rows left in doubt: a real process against the real SMTP sink.

SIGTERM (systemd, ``docker stop``, ``timeout``) must behave like Ctrl-C:
the transactions in flight finish and are recorded, the summary is
printed, the exit code is 143, and no row is left ``unknown``. A run that
does leave rows in doubt exits 1 and names them with the cause;
``--resend-unknown`` sends them again with the same Message-ID.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from digest import pipeline
from digest.models import Delivery
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import DISCONNECT_AFTER_DOT, SmtpServer


def _wait_for_messages(server: SmtpServer, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(server.messages) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no messages arrived"
        time.sleep(0.01)


def test_sigterm_mid_send_finishes_what_is_in_flight_and_exits_143(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(40)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, connections=2)
    wanted = {r.email for r in people if ws.matches(r)}
    ws.fetch(path)
    smtp_server.inject("DATA", 250, delay=0.3, times=None)  # a slow relay: the dot is in, the reply is late
    proc = subprocess.Popen(
        ws.digest_cmd(path, "send", "--week", ws.WEEK),
        env=ws.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_messages(smtp_server, 3, proc)
    proc.send_signal(signal.SIGTERM)  # lands while the replies of the messages in flight are awaited
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert "issue 2018-W02: " in out and " sent, " in out  # the summary
    assert "interrupted (SIGTERM)" in err
    assert "Traceback" not in err

    with pipeline.open_store(ws.load(path)) as store:
        counts = store.delivery_counts(ws.WEEK)
    assert counts[Delivery.UNKNOWN] == counts[Delivery.CLAIMED] == 0
    first = ws.per_recipient(smtp_server.messages)
    assert counts[Delivery.SENT] == len(first) < len(wanted)  # every message the relay took is recorded sent
    assert set(first.values()) == {1}

    smtp_server.clear_faults()
    again = ws.run_cli(path, "send", "--week", ws.WEEK)
    assert again.returncode == 0, again.stdout + again.stderr
    got = ws.per_recipient(smtp_server.messages)
    assert set(got) == wanted
    assert set(got.values()) == {1}


def test_rows_in_doubt_fail_the_run_by_name_and_resend_unknown_sends_them_again(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    people = ws.rows(8)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1)
    ws.fetch(path)
    config = ws.load(path)
    stale, lost = "r000@example.org", "r001@example.org"
    with pipeline.open_store(config) as store:
        # What a process killed mid-transaction leaves: its claim, and no lock (it died).
        built = pipeline.prepare(config, store, pipeline.resolve_weeks(config, ws.RUN_NOW, week=ws.WEEK), ws.RUN_NOW)
        store.plan_deliveries(ws.WEEK, [(s.email, v) for s, v in built.audience.assignments if v], ws.RUN_NOW)
        assert store.claim(ws.WEEK, stale, ws.RUN_NOW)
    smtp_server.inject("DATA", DISCONNECT_AFTER_DOT, recipient=lost)

    first = ws.run_cli(path, "send", "--week", ws.WEEK)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "2 message(s) in state 'unknown'" in first.stdout
    assert f"    {stale}: in doubt: the process stopped while sending\n" in first.stdout
    assert f"    {lost}: in doubt: connection lost after the data was sent, before the reply\n" in first.stdout
    assert "digest send --resend-unknown --week 2018-W02" in first.stdout

    plain = ws.run_cli(path, "send", "--week", ws.WEEK)  # without the flag nothing is resent
    assert plain.returncode == 0 and "2 message(s) in state 'unknown'" in plain.stdout, plain.stdout + plain.stderr
    assert len(smtp_server.received(lost)) == 1 and smtp_server.received(stale) == []

    resent = ws.run_cli(path, "send", "--week", ws.WEEK, "--resend-unknown")
    assert resent.returncode == 0, resent.stdout + resent.stderr
    twice = smtp_server.received(lost)
    assert len(twice) == 2
    ids = {str(ws.parse(m.data)["Message-ID"]) for m in twice}
    assert len(ids) == 1  # the same message: a receiver that has it already can drop the copy
    assert len(smtp_server.received(stale)) == 1
    with pipeline.open_store(config) as store:
        counts = store.delivery_counts(ws.WEEK)
    assert counts[Delivery.UNKNOWN] == 0
    assert counts[Delivery.SENT] == sum(ws.matches(r) for r in people)


def test_sigterm_during_a_retry_backoff_stops_at_once_and_leaves_the_row_due(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    people = ws.rows(6)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1)
    ws.fetch(path)
    stuck = "r000@example.org"
    smtp_server.inject("RCPT", 451, recipient=stuck, text="4.7.1 greylisted", times=None)  # backoff: 0.5 s, 1 s, 2 s...
    proc = subprocess.Popen(
        ws.digest_cmd(path, "send", "--week", ws.WEEK),
        env=ws.cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while smtp_server.count("RCPT", stuck) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # now in the 2 s wait before the fourth try
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert time.monotonic() - signalled < 1.5  # it did not wait out the backoff
    assert smtp_server.count("RCPT", stuck) == 3
    with pipeline.open_store(ws.load(path)) as store:
        row = {r.email: r for r in store.deliveries(ws.WEEK)}[stuck]
        counts = store.delivery_counts(ws.WEEK)
    assert row.state is Delivery.FAILED_TEMPORARY
    assert counts[Delivery.CLAIMED] == counts[Delivery.UNKNOWN] == counts[Delivery.SENT] == 0
