"""``digest issues`` and ``digest report`` after real sends over a loopback SMTP server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from digest import pipeline
from digest.cli import cli
from digest.models import IsoWeek, SubscriberStatus
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import DISCONNECT_AFTER_DOT, SmtpServer


def invoke(path: Path, *args: str) -> Result:
    return CliRunner(env=ws.ENV).invoke(cli, ["--config", str(path), *args])


def as_json(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_issues_and_report_tell_what_happened(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(12)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, connections=1)
    config = ws.load(path)
    lost, refused = "r001@example.org", "r002@example.org"
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        pipeline.send_issue(config, store, (IsoWeek(2018, 1),), clock=clock)
        smtp_server.inject("DATA", DISCONNECT_AFTER_DOT, recipient=lost)
        smtp_server.inject("RCPT", 550, recipient=refused, text="5.1.1 user unknown", times=None)
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=clock)
        # r003 then unsubscribes with the one-click button: it follows the newest issue.
        store.set_status("r003@example.org", SubscriberStatus.UNSUBSCRIBED, clock(), "one-click")

    issues = as_json(invoke(path, "issues", "--json"))
    assert [i["key"] for i in issues] == ["2018-W02", "2018-W01"]
    wanted = sum(1 for r in people if ws.matches(r))
    w02 = issues[0]
    assert w02["state"] == "partly failed"
    assert w02["counts"]["unknown"] == 1
    assert w02["counts"]["sent"] + w02["counts"]["unknown"] + w02["counts"]["failed-permanent"] == wanted
    assert w02["first_send"] <= w02["last_send"]
    assert w02["frozen_at"] <= w02["first_send"]

    (report,) = as_json(invoke(path, "report", "--week", "2018-W02", "--json"))
    assert report["key"] == "2018-W02"
    assert report["unknown"] == [lost]
    assert [f["email"] for f in report["failed"]] == [refused]
    assert report["failed"][0]["code"] == 550
    assert report["smtp_codes"] == {"550": 1}
    assert report["domains"] == {"example.org": wanted}
    assert sum(sum(v.values()) for v in report["variants"].values()) == wanted
    assert report["unsubscribes"] == {"one-click": 1}
    assert report["rate_per_second"] is None or report["rate_per_second"] > 0

    newest = as_json(invoke(path, "report", "--json"))[0]
    assert newest["key"] == "2018-W02"
    table = invoke(path, "issues")
    assert table.exit_code == 0
    assert table.output.count("2018-W0") == 2 and "partly" in table.output
    text = invoke(path, "report", "--week", "2018-W02")
    assert f"in doubt: {lost}" in text.output and f"failed: {refused} (550)" in text.output


def test_report_of_an_issue_never_frozen_is_one_line(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = ws.make_folder(tmp_path, ws.rows(2), port=smtp_server.port)
    nothing = invoke(path, "report")
    assert nothing.exit_code == 2 and "no issue has been frozen yet" in nothing.output
    assert as_json(invoke(path, "issues", "--json")) == []
    bad = invoke(path, "report", "--week", "2018-W99x")
    assert bad.exit_code == 2 and "--week" in bad.output


def test_a_held_week_is_listed_as_held(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = ws.make_folder(tmp_path, ws.rows(2), port=smtp_server.port)
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        store.hold_issue("2018-W01", ws.RUN_NOW, 1)
    rows = as_json(invoke(path, "issues", "--json"))
    assert rows == [{"key": "2018-W01", "state": "held", "held_at": ws.RUN_NOW.isoformat(), "entries": 1}]
    text = invoke(path, "issues")
    assert "2018-W01: held at" in text.output and "with 1 entries" in text.output
