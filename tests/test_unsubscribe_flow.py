"""Unsubscribing end to end: during a send, and with the one-click link of a delivered message.

The web app runs under uvicorn on 127.0.0.1 (port 0) over the real
``LocalBackend`` of a scaffolded folder; messages go through aiosmtpd on
loopback; state is the folder's SQLite file.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from digest import pipeline, subscribers
from digest.backend import LocalBackend
from digest.config import Config
from digest.models import Delivery, IsoWeek, Issue, SubscriberStatus
from digest.send import SendEvent
from digest.store import Store
from digest.web import create_app
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer
from tests.fixtures.web_server import running

W02 = (IsoWeek(2018, 2),)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # LocalBackend reads the config (and so the secret) from the environment.
    monkeypatch.setenv("DIGEST_SECRET", ws.SECRET)


def unsubscribe_during_send(
    tmp_path: Path, smtp_server: SmtpServer, *, n: int, rate: float, ahead: int
) -> tuple[str, pipeline.SendSummary, list[str]]:
    """Send W02; at the first delivered message, unsubscribe the reader ``ahead`` places later."""
    people = ws.rows(n)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, rate=rate, connections=2)
    config = ws.load(path)
    ws.fetch(path)
    order = sorted(r.email for r in people if ws.matches(r))
    target = order[ahead]
    backend = LocalBackend(path)
    with pipeline.open_store(config) as store:
        sub = next(s for s, v in pipeline.audience(config, store, _w02(config, store)).assignments if s.email == target)
        token = pipeline.recipient(config, sub).unsubscribe_url.rsplit("/", 1)[1]
        done: list[str] = []

        def progress(event: SendEvent, total: int) -> None:
            if not done:
                done.append(backend.unsubscribe(token, "one-click"))

        summary = pipeline.send_issue(config, store, W02, clock=ws.fixed_clock(), progress=progress)
        rows = {r.email: r for r in store.deliveries("2018-W02")}
        assert store.subscriber_status([target]) == {target: SubscriberStatus.UNSUBSCRIBED}
    assert done == [target]
    assert rows[target].state is Delivery.SKIPPED
    assert rows[target].last_error == "unsubscribed"
    assert {e for e, r in rows.items() if r.state is Delivery.SENT} == set(order) - {target}
    return target, summary, order


def _w02(config: Config, store: Store) -> Issue:
    return pipeline.make_issue(config, store, W02)


def test_unsubscribe_during_a_fast_send_skips_the_reader(tmp_path: Path, smtp_server: SmtpServer) -> None:
    target, summary, order = unsubscribe_during_send(tmp_path, smtp_server, n=90, rate=0, ahead=-1)
    got = ws.per_recipient(smtp_server.messages)
    assert target not in got
    assert set(got) == set(order) - {target}
    assert set(got.values()) == {1}
    assert summary.report.skipped == 1
    assert smtp_server.count("RCPT", target) == 0


def test_unsubscribe_during_a_rate_limited_send_is_noticed_within_the_run(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    # 20 messages at 10 a second take at least 1.9 s: longer than the re-read interval.
    target, summary, order = unsubscribe_during_send(tmp_path, smtp_server, n=30, rate=10, ahead=22)
    assert target not in ws.per_recipient(smtp_server.messages)
    assert len(smtp_server.messages) == len(order) - 1
    assert summary.report.skipped == 1


def statuses(config: Config) -> dict[str, SubscriberStatus]:
    with pipeline.open_store(config) as store:
        return store.subscriber_status()


def subscribers_json(path: Path) -> dict[str, dict[str, object]]:
    done = ws.run_cli(path, "subscribers", "list", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {str(r["email"]): r for r in rows}


def test_one_click_link_of_a_delivered_message_unsubscribes_for_good(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(12)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port)
    ws.fetch(path)
    # Both take every theme: the next issue carries only what the first did not (2018-W01's entries).
    leaver, stayer = "r000@example.org", "r006@example.org"
    with (
        running(create_app(LocalBackend(path), title="Cyber Weekly", enable_preview=False)) as base,
        httpx.Client(trust_env=False, follow_redirects=False) as http,
    ):
        text = path.read_text(encoding="utf-8").replace('base_url = "http://127.0.0.1:8025"', f'base_url = "{base}"')
        path.write_text(text, encoding="utf-8")
        config = ws.load(path)
        assert config.digest.base_url == base
        with pipeline.open_store(config) as store:
            first = pipeline.send_issue(config, store, W02, clock=ws.fixed_clock())
        assert first.report.sent == len(smtp_server.messages) > 0

        (received,) = smtp_server.received(leaver)
        msg = ws.parse(received.data)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        header = str(msg["List-Unsubscribe"]).strip()  # folded before the URL (RFC 2369 white space)
        assert header.startswith(f"<{base}/u/") and header.endswith(">")
        url = header[1:-1]
        assert url in ws.text_body(msg)

        page = http.get(url)
        assert page.status_code == 200
        assert "unsubscribe" in page.text.lower()
        assert statuses(config) == {}  # a GET changes nothing

        r = http.post(url, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200
        assert "location" not in r.headers
        assert "set-cookie" not in r.headers
        assert statuses(config) == {leaver: SubscriberStatus.UNSUBSCRIBED}

        token = url.rsplit("/", 1)[1]
        tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        assert http.get(f"{base}/u/{tampered}").status_code == 400
        assert http.post(f"{base}/u/{tampered}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
        assert statuses(config) == {leaver: SubscriberStatus.UNSUBSCRIBED}

    # The next issue (a two-week range, so a new issue key) leaves them out.
    mark = len(smtp_server.messages)
    with pipeline.open_store(config) as store:
        nxt = pipeline.send_issue(config, store, (IsoWeek(2018, 1), IsoWeek(2018, 2)), clock=ws.fixed_clock())
        assert leaver not in {r.email for r in store.deliveries(nxt.issue_key)}
    new = ws.per_recipient(smtp_server.messages[mark:])
    assert nxt.report.sent == len(new) > 0 and stayer in new
    assert leaver not in new

    # Taking them off the list and importing them again does not re-subscribe them.
    lists = config.subscribers_dir
    assert subscribers.remove_subscriber(lists, leaver)
    again = tmp_path / "again.csv"
    again.write_text(f"email,name,themes,timezone\n{leaver},Back Again,,\n", encoding="utf-8")
    imported = subscribers.import_file(again, lists / "subscribers.csv", [t.name for t in config.themes])
    assert (imported.added, imported.problems) == (1, ())
    listed = subscribers_json(path)
    assert listed[leaver]["name"] == "Back Again"
    assert listed[leaver]["status"] == "unsubscribed"
    assert listed[stayer]["status"] == "active"
    mark = len(smtp_server.messages)
    with pipeline.open_store(config) as store:
        later = pipeline.send_issue(config, store, (IsoWeek(2017, 52),), clock=ws.fixed_clock())
    assert later.report.sent > 0
    assert leaver not in ws.per_recipient(smtp_server.messages[mark:])
