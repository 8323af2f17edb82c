"""``digest send --test``: the message a subscriber would get, to test addresses, with the ledger untouched.

Real aiosmtpd on loopback, real SQLite; the web app's ``/u/test`` page over
a real server.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from digest import pipeline
from digest.backend import LocalBackend
from digest.compose import message_id
from digest.errors import ConfigError
from digest.models import IsoWeek
from digest.pipeline.testsend import MAX_TEST_ADDRESSES, parse_addresses, send_test
from digest.web import create_app
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer
from tests.fixtures.web_server import running

W02 = (IsoWeek(2018, 2),)
KEY = "2018-W02"
TESTERS = ("tester@example.org", "Other.Tester@Example.NET")


def test_a_test_as_a_subscriber_is_their_message_marked_as_a_test_and_the_ledger_is_unchanged(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    people = ws.rows(12)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port)
    config = ws.load(path)
    ws.fetch(path)
    cyber = next(r for r in people if r.themes == "Cybersecurity")
    with pipeline.open_store(config) as store:
        pipeline.send_issue(config, store, W02, clock=ws.fixed_clock())
        (real,) = smtp_server.received(cyber.email)
        smtp_server.messages.clear()
        before = store.delivery_counts(KEY)
        rows_before = store.deliveries(KEY)
        done = send_test(
            config, store, W02, parse_addresses(",".join(TESTERS)), clock=ws.fixed_clock(), as_email=cyber.email
        )
        after = store.delivery_counts(KEY)
        rows_after = store.deliveries(KEY)

    assert before == after and rows_before == rows_after
    assert done.frozen and done.report.sent == 2
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == ["Other.Tester@example.net", TESTERS[0]]
    theirs = ws.parse(real.data)
    for received in smtp_server.messages:
        msg = ws.parse(received.data)
        (rcpt,) = received.rcpt_tos
        assert msg["To"].addresses[0].addr_spec == rcpt
        assert msg["To"].addresses[0].display_name == cyber.name
        assert str(msg["Subject"]) == "[TEST] " + str(theirs["Subject"])
        assert msg["X-Digest-Test"] == "1" and "X-Digest-Test" not in theirs
        assert msg["Message-ID"] != theirs["Message-ID"]
        assert msg["Message-ID"] != message_id(KEY, rcpt, "example.org")  # not what a subscriber at it would get
        assert str(msg["List-Unsubscribe"]).startswith("<http://127.0.0.1:8025/u/test>")
        body = ws.text_body(msg)
        assert "CYBERSECURITY" in body and "DIGITAL ECONOMY" not in body  # their variant
        assert "/u/test" in body
    ids = {ws.parse(m.data)["Message-ID"] for m in smtp_server.messages}
    assert len(ids) == 2


def test_a_test_of_an_issue_not_frozen_is_the_all_themes_variant_and_freezes_nothing(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    path = ws.make_folder(tmp_path, ws.rows(6), port=smtp_server.port)
    config = ws.load(path)
    ws.fetch(path)
    with pipeline.open_store(config) as store:
        done = send_test(config, store, W02, (TESTERS[0],), clock=ws.fixed_clock())
        assert store.frozen_issue(KEY) is None
        assert set(store.delivery_counts(KEY).values()) == {0}
    assert not done.frozen and done.report.sent == 1
    (received,) = smtp_server.messages
    body = ws.text_body(ws.parse(received.data))
    assert all(t in body for t in ("CYBERSECURITY", "DIGITAL ECONOMY", "AI & TECH COMPETITION"))


def test_the_test_link_page_says_it_was_a_test_and_unsubscribes_nobody(
    tmp_path: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", ws.SECRET)
    path = ws.make_folder(tmp_path, ws.rows(4), port=smtp_server.port)
    config = ws.load(path)
    with (
        running(create_app(LocalBackend(path), title="Cyber Weekly", enable_preview=False)) as base,
        httpx.Client(trust_env=False, follow_redirects=False) as http,
    ):
        page = http.get(f"{base}/u/test")
        click = http.post(f"{base}/u/test", data={"List-Unsubscribe": "One-Click"})
        token = http.get(f"{base}/u/not-a-valid-token-at-all-000")
    assert page.status_code == 200 and "This was a test message" in page.text
    assert click.status_code == 200 and "unsubscribed nobody" in click.text
    assert token.status_code == 400  # a real token route is still there
    with pipeline.open_store(config) as store:
        assert store.subscriber_status() == {}


def test_eleven_addresses_or_a_bad_one_are_usage_errors_on_one_line(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = ws.make_folder(tmp_path, ws.rows(4), port=smtp_server.port)
    ws.fetch(path)
    eleven = ",".join(f"t{i}@example.org" for i in range(MAX_TEST_ADDRESSES + 1))
    for arg, words in (
        (eleven, "at most 10 addresses"),
        ("tester@example.org,not-an-address", "invalid address"),
        (" , ", "give one or more addresses"),
    ):
        done = ws.run_cli(path, "send", "--test", arg, "--week", KEY)
        assert done.returncode == 2, (arg, done.stdout)
        (line,) = done.stderr.strip().splitlines()
        assert words in line
    nobody = ws.run_cli(path, "send", "--test", TESTERS[0], "--as", "stranger@example.org", "--week", KEY)
    assert nobody.returncode == 2 and "--as" in nobody.stderr
    mixed = ws.run_cli(path, "send", "--test", TESTERS[0], "--dry-run", "--week", KEY)
    assert mixed.returncode == 2
    assert smtp_server.messages == []
    ten = ",".join(f"t{i}@example.org" for i in range(MAX_TEST_ADDRESSES))
    ok = ws.run_cli(path, "send", "--test", ten, "--week", KEY)
    assert ok.returncode == 0, ok.stderr
    assert "10 sent" in ok.stdout and "not frozen" in ok.stdout
    assert len(smtp_server.messages) == 10


def test_parse_addresses_drops_repeats_and_keeps_ten() -> None:
    assert parse_addresses("a@example.org, A@example.org ,b@example.org") == ("a@example.org", "b@example.org")
    with pytest.raises(ConfigError, match="at most 10"):
        parse_addresses(",".join(f"x{i}@example.org" for i in range(11)))
    with pytest.raises(ConfigError, match="invalid address"):
        parse_addresses("a@example.org\r\nBcc: evil@example.org")
