"""``[fetch] alert_after``: ``digest run`` calls out a source that has failed that many runs in a row."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from digest import pipeline
from digest.cli import cli
from digest.pipeline.alerts import source_alerts
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer

#: Rich markup and HTML in a source name must reach the report as they are.
HOSTILE = '[bold red]Fake[/] <script>"&'


def invoke(path: Path, *args: str) -> Result:
    return CliRunner(env=ws.ENV).invoke(cli, ["--config", str(path), *args])


def folder(tmp_path: Path, port: int) -> Path:
    extra = f'\n[[sources]]\nname = {json.dumps(HOSTILE)}\nkind = "feed"\nurl = "sources/missing.xml"\n'
    path = ws.make_folder(tmp_path, ws.rows(2), port=port, extra=extra)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("concurrency = 8", "concurrency = 8\nalert_after = 2", 1), encoding="utf-8")
    return path


def test_run_calls_out_a_source_from_its_alert_after_th_failure(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = folder(tmp_path, smtp_server.port)
    first = invoke(path, "run")
    assert first.exit_code == 1  # a failing source fails the run in part, as before
    assert "alert:" not in first.stderr  # one failure is not yet a streak

    second = invoke(path, "run")
    assert second.exit_code == 1
    alerts = [line for line in second.stderr.splitlines() if line.startswith("alert:")]
    assert len(alerts) == 1
    assert alerts[0].startswith(f"alert: {HOSTILE}: failed 2 runs in a row (")  # markup printed, not applied
    assert "China-US Focus" not in second.stderr  # the good sources are not called out

    third = json.loads(invoke(path, "run", "--json").stdout)
    (alert,) = third["source_alerts"]
    assert alert["source"] == HOSTILE and alert["consecutive_failures"] == 3 and alert["last_error"]
    assert third["exit_code"] == 1


def test_a_success_ends_the_streak(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = folder(tmp_path, smtp_server.port)
    for _ in range(2):
        invoke(path, "run")
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        assert [a.source for a in source_alerts(config, store)] == [HOSTILE]
    (path.parent / "sources" / "missing.xml").write_bytes((path.parent / "sources" / "ai-watch.atom.xml").read_bytes())
    quiet = invoke(path, "run", "--json")
    assert json.loads(quiet.stdout)["source_alerts"] == []
    with pipeline.open_store(config) as store:
        assert source_alerts(config, store) == []


def test_editors_are_mailed_once_per_failing_streak(tmp_path: Path, smtp_server: SmtpServer) -> None:
    extra = '\n[editorial]\neditors = ["ed@example.org"]\n\n[[sources]]\nname = "Gone"\nurl = "sources/gone.xml"\n'
    path = ws.make_folder(tmp_path / "alerts", ws.rows(2), port=smtp_server.port, extra=extra)
    config = ws.load(path)

    def alert_mails() -> list[bytes]:
        return [m.data for m in smtp_server.messages if m.rcpt_tos == ("ed@example.org",)]

    with pipeline.open_store(config) as store:
        for run_number in range(1, 6):
            pipeline.run(config, store, clock=ws.fixed_clock())
            assert len(alert_mails()) == (0 if run_number < 3 else 1), run_number  # at the 3rd failure, once
    mail = alert_mails()[0]
    assert b"Gone: failed 3 runs in a row" in mail.replace(b"=\r\n", b"")
    assert b"List-Unsubscribe" not in mail
