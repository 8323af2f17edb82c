"""``digest sources``: the health report and the add/remove/import/export edits of digest.toml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.config import load_config

OPML = Path(__file__).parent / "data" / "opml"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    assert invoke("init", str(folder)).exit_code == 0
    monkeypatch.chdir(folder)
    return folder


def sources_json() -> list[dict[str, Any]]:
    result = invoke("sources", "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_add_appends_a_checked_block_and_keeps_the_comments(site: Path) -> None:
    before = (site / "digest.toml").read_text()
    result = invoke("sources", "add", "Krebs", "https://krebsonsecurity.com/feed/")
    assert result.exit_code == 0, result.output
    after = (site / "digest.toml").read_text()
    assert after.startswith(before)  # nothing of the editor's file changed
    assert after.endswith('[[sources]]\nname = "Krebs"\nkind = "feed"\nurl = "https://krebsonsecurity.com/feed/"\n')
    names = [s.name for s in load_config(site / "digest.toml").sources]
    assert names[-1] == "Krebs"
    assert sources_json()[-1]["name"] == "Krebs"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["China-US Focus: Cyber", "https://example.org/feed"], "already exists"),
        (["Bad", "http://[::1/feed"], "invalid URL"),
        (["Gopher", "gopher://example.org/feed"], "http(s)"),
        (["Page", "https://example.org/", "--kind", "listing"], "needs CSS selectors"),
        (["Themed", "https://example.org/feed", "--theme", "No Such Theme"], "no theme named 'No Such Theme'"),
    ],
)
def test_a_bad_add_is_one_line_and_leaves_the_file_alone(site: Path, args: list[str], message: str) -> None:
    before = (site / "digest.toml").read_text()
    result = invoke("sources", "add", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert (site / "digest.toml").read_text() == before
    assert not list(site.glob(".digest-*"))  # no temp file left behind


def test_remove_cuts_the_block_with_its_selectors(site: Path) -> None:
    config = site / "digest.toml"
    config.write_text(
        config.read_text()
        + '\n[[sources]]\nname = "Page"\nkind = "listing"\nurl = "https://example.org/"\n'
        + '[sources.selectors]\nitem = "article"\ntitle = "h2"\n\n# the next one\n'
        + '[[sources]]\nname = "After"\nurl = "https://example.org/feed"\n'
    )
    result = invoke("sources", "remove", "Page")
    assert result.exit_code == 0, result.output
    text = config.read_text()
    assert "Page" not in text and "selectors" not in text
    assert '# the next one\n[[sources]]\nname = "After"' in text
    assert [s.name for s in load_config(config).sources][-1] == "After"
    missing = invoke("sources", "remove", "Nope")
    assert missing.exit_code == 2 and "no source named 'Nope'" in missing.output


def test_import_an_rss2email_export_then_again(site: Path) -> None:
    first = invoke("sources", "import", str(OPML / "rss2email.opml"))
    assert first.exit_code == 0, first.output
    assert "imported 3 feeds" in first.output
    names = [s["name"] for s in sources_json()]
    assert names[-3:] == ["krebsonsecurity.com", "www.schneier.com", "feeds.feedburner.com"]
    again = invoke("sources", "import", str(OPML / "rss2email.opml"))
    assert again.exit_code == 0
    assert "imported 0 feeds" in again.output and "3 already configured" in again.output


def test_import_reports_bad_outlines_and_exits_1(site: Path) -> None:
    result = invoke("sources", "import", str(OPML / "reader.opml"))
    assert result.exit_code == 1
    assert "imported 2 feeds" in result.output and "2 skipped" in result.output
    assert "outline 3 ('Broken one')" in result.output
    assert {"Krebs on Security", "AI Watch"} <= {s["name"] for s in sources_json()}


def test_export_round_trips_through_import(site: Path, tmp_path: Path) -> None:
    assert invoke("sources", "import", str(OPML / "rss2email.opml")).exit_code == 0
    exported = invoke("sources", "export")
    assert exported.exit_code == 0
    out = tmp_path / "out.opml"
    out.write_text(exported.stdout)
    other = tmp_path / "other"
    assert invoke("init", str(other)).exit_code == 0
    result = invoke("--config", str(other / "digest.toml"), "sources", "import", str(out))
    assert result.exit_code == 0, result.output
    urls = [s.url for s in load_config(other / "digest.toml").sources if s.url.startswith("https://")]
    assert urls == [
        "https://krebsonsecurity.com/feed/",
        "https://www.schneier.com/feed/atom/",
        "https://feeds.feedburner.com/TheHackersNews",
    ]


def test_the_report_shows_failures_history_and_stored_entries(site: Path) -> None:
    missing = site / "sources" / "gone.xml"
    assert invoke("sources", "add", "Gone", str(missing)).exit_code == 0
    for _ in range(3):
        invoke("fetch")
    rows = {s["name"]: s for s in sources_json()}
    gone = rows["Gone"]
    assert gone["last_status"] == "failed"
    assert gone["consecutive_failures"] == 3
    assert gone["alert"] is True  # alert_after = 3
    assert "no such file" in gone["last_error"]
    assert gone["last_success"] is None and gone["entries_stored"] == 0
    assert [h["status"] for h in gone["history"]] == ["failed"] * 3
    good = rows["China-US Focus: Cyber"]
    assert good["last_status"] == "ok" and good["consecutive_failures"] == 0
    assert good["entries_stored"] == 10 and good["items_last_time"] == 10
    assert [h["new"] for h in good["history"]] == [0, 0, 10]  # newest first
    table = invoke("sources")
    assert table.exit_code == 0
    assert "Gone: no such file" in table.output and "failed 3 runs in a row" in table.output


def test_enabled_false_pauses_a_source_and_keeps_what_it_gave(site: Path) -> None:
    assert invoke("fetch").exit_code == 0
    config = site / "digest.toml"
    text = config.read_text()
    marker = 'name = "Cyber Policy Notes"\n'
    assert marker in text
    config.write_text(text.replace(marker, marker + "enabled = false\n", 1))
    before = {s["name"]: s for s in sources_json()}["Cyber Policy Notes"]
    assert invoke("fetch").exit_code == 0
    after = {s["name"]: s for s in sources_json()}["Cyber Policy Notes"]
    assert after["enabled"] is False
    assert len(after["history"]) == len(before["history"])  # not fetched again
    assert after["entries_stored"] == before["entries_stored"] > 0  # what it gave stays
    config.write_text(config.read_text().replace("enabled = false", 'enabled = "no"'))
    bad = invoke("sources")
    assert bad.exit_code == 2 and "enabled: must be true or false" in bad.output
