"""The carry record through the real CLI: ``digest entries --json`` gives ``issue``; ``send --week`` carries."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from tests.data.carry.site import SECRET, Site, day, eid, json_lines, monday
from tests.fixtures.smtp_server import SmtpServer


def invoke(site: Site, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(site.root / "digest.toml"), *args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    monkeypatch.setenv("COLUMNS", "200")


def test_entries_json_names_the_issue_each_entry_went_out_in(tmp_path: Path, smtp_server: SmtpServer) -> None:
    site = Site(tmp_path, smtp_port=smtp_server.port, issue="min_entries = 2")
    site.publish("sent", day(2018, 2, 3))
    site.publish("also-sent", day(2018, 2, 4))
    site.publish("held", day(2018, 3, 3))
    assert site.run(monday(2018, 3)).sent is not None
    assert site.run(monday(2018, 4)).sent is None  # 2018-W03 has one entry: held

    result = invoke(site, "entries", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json_lines(result.stdout)}
    assert {k: v["issue"] for k, v in rows.items()} == {
        eid("sent"): "2018-W02",
        eid("also-sent"): "2018-W02",
        eid("held"): None,
    }
    assert all("issue" in row and "week" in row for row in rows.values())


def test_send_week_on_the_command_line_carries_late_entries(tmp_path: Path, smtp_server: SmtpServer) -> None:
    site = Site(tmp_path, smtp_port=smtp_server.port)
    site.publish("w2", day(2018, 2, 3))
    assert site.run(monday(2018, 3)).sent is not None
    site.publish("late", day(2018, 2, 7, 23), title="Sunday night story")
    site.publish("w3", day(2018, 3, 2))
    assert invoke(site, "fetch").exit_code == 0
    mark = len(smtp_server.messages)

    built = invoke(site, "build", "--week", "2018-W03", "--out", str(tmp_path / "out"))
    assert built.exit_code == 0, built.output
    assert "issue 2018-W03: 2 entries" in built.stdout
    assert "Sunday night story [2] (from last week)" in (tmp_path / "out" / "2018-W03.all.txt").read_text()

    sent = invoke(site, "send", "--week", "2018-W03")
    assert sent.exit_code == 0, sent.output
    assert len(smtp_server.messages) - mark == 2
    rows = {row["id"]: row["issue"] for row in json_lines(invoke(site, "entries", "--json").stdout)}
    assert rows == {eid("w2"): "2018-W02", eid("late"): "2018-W03", eid("w3"): "2018-W03"}


def test_build_of_a_thin_week_says_it_is_held(tmp_path: Path) -> None:
    site = Site(tmp_path, issue="min_entries = 3")
    site.publish("one", day(2018, 2, 3))
    assert invoke(site, "fetch").exit_code == 0
    result = invoke(site, "build", "--week", "2018-W02", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "fewer than min_entries = 3; held" in " ".join(result.stderr.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("table", "line", "named"),
    [
        ("issue", "max_entries = 0", "issue.max_entries"),
        ("issue", "min_per_theme = -1", "issue.min_per_theme"),
        ("issue", 'max_hold_weeks = "3"', "issue.max_hold_weeks"),
        ("issue", "min_entries = 2.5", "issue.min_entries"),
        ("updates", 'policy = "sometimes"', "updates.policy"),
    ],
)
def test_a_bad_issue_setting_is_one_line_and_exit_2(tmp_path: Path, table: str, line: str, named: str) -> None:
    site = Site(
        tmp_path, extra=f"[{table}]\n{line}" if table == "updates" else "", issue=line if table == "issue" else ""
    )
    result = invoke(site, "build", "--week", "2018-W02", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_issue_settings_and_their_older_spelling(tmp_path: Path) -> None:
    site = Site(tmp_path, issue="max_entries = 7\nmin_per_theme = 2\nmax_hold_weeks = 1")
    issue = site.config.issue
    assert (issue.max_entries, issue.min_per_theme, issue.max_hold_weeks, issue.min_entries) == (7, 2, 1, 1)
    older = Site(tmp_path / "older")
    toml = older.root / "digest.toml"
    toml.write_text(toml.read_text().replace("[digest]\n", "[digest]\nmin_entries = 4\n", 1))
    assert older.config.issue.min_entries == 4
    both = Site(tmp_path / "both", issue="min_entries = 2")
    toml = both.root / "digest.toml"
    toml.write_text(toml.read_text().replace("[digest]\n", "[digest]\nmin_entries = 4\n", 1))
    assert both.config.issue.min_entries == 2


def test_build_warns_of_entries_too_old_to_carry(tmp_path: Path, smtp_server: SmtpServer) -> None:
    site = Site(tmp_path, smtp_port=smtp_server.port, issue="max_hold_weeks = 1")
    site.publish("w1", day(2018, 1, 3))
    assert site.run(monday(2018, 2)).sent is not None
    site.publish("w2", day(2018, 2, 3))
    site.publish("w5", day(2018, 5, 3))
    assert invoke(site, "fetch").exit_code == 0
    result = invoke(site, "build", "--week", "2018-W05", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "1 unsent entries of 2018-W02 expired" in " ".join(result.stderr.split())
    assert "issue 2018-W05: 1 entries" in result.stdout
