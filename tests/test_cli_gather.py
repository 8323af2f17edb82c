"""``digest init``, ``fetch`` and ``entries`` through the real CLI, each in its own working folder."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.resources import packaged_templates
from tests.fixtures.http_server import FeedServer

CLI_DATA = Path(__file__).parent / "data" / "cli"
SHANGHAI = ZoneInfo("Asia/Shanghai")
LISTING = "China-US Focus: Cyber"
ENTRY_KEYS = {"id", "source", "title", "link", "summary", "authors", "published", "theme", "week"}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A freshly initialised working folder, made the current directory."""
    folder = tmp_path / "site"
    result = invoke("init", str(folder))
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def fetched(site: Path) -> Path:
    result = invoke("fetch")
    assert result.exit_code == 0, result.output
    return site


def report_rows(output: str) -> dict[str, list[str]]:
    """The fetch table as {source: [new, updated, unchanged, status...]}, read from rich's box drawing."""
    rows: dict[str, list[str]] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 6 and cells[0] and cells[1].isdigit():
            rows[cells[0]] = cells[1:]
    return rows


def entries_json(*args: str) -> list[dict[str, Any]]:
    result = invoke("entries", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def local_config(name: str, folder: Path, server: FeedServer) -> Path:
    text = (CLI_DATA / name).read_text(encoding="utf-8").replace("@BASE@", server.base)
    path = folder / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- init --------------------------------------------------------------------------


def test_init_creates_a_working_folder(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    result = invoke("init", str(folder))

    assert result.exit_code == 0, result.output
    assert (folder / "digest.toml").is_file()
    assert (folder / "subscribers" / "subscribers.csv").read_text(encoding="utf-8").startswith("email,name,themes")
    shipped = sorted(p.relative_to(packaged_templates()) for p in packaged_templates().rglob("*") if p.is_file())
    assert shipped, "the package ships templates"
    for rel in shipped:
        assert (folder / "templates" / rel).read_bytes() == (packaged_templates() / rel).read_bytes()
    assert sorted(p.name for p in (folder / "sources").iterdir()) == [
        "ai-watch.atom.xml",
        "china-us-focus-cyber.txt",
        "cyber-policy.rss.xml",
    ]
    assert f"created {folder / 'digest.toml'}" in result.stdout


def test_init_twice_overwrites_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "again"
    assert invoke("init", str(folder)).exit_code == 0
    edited = {
        folder / "digest.toml": '[digest]\ntitle = "Mine"\n',
        folder / "templates" / "styles.css": "body { color: red }\n",
        folder / "subscribers" / "subscribers.csv": "email,name,themes,timezone\nme@example.org,Me,,\n",
    }
    for path, text in edited.items():
        path.write_text(text, encoding="utf-8")
    (folder / "templates" / "subject.txt.j2").unlink()

    result = invoke("init", str(folder))

    assert result.exit_code == 0, result.output
    for path, text in edited.items():
        assert path.read_text(encoding="utf-8") == text
    # Only what was missing comes back.
    assert (folder / "templates" / "subject.txt.j2").is_file()
    assert [line for line in result.stdout.splitlines() if line.startswith("created")] == [
        f"created {folder / 'templates' / 'subject.txt.j2'}"
    ]


def test_init_from_an_installed_package_copies_the_templates(tmp_path: Path) -> None:
    """In a wheel the templates live in ``digest._templates``, a package without ``__init__.py``."""
    import digest

    site = tmp_path / "site-packages"
    shutil.copytree(Path(digest.__file__).parent, site / "digest", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(packaged_templates(), site / "digest" / "_templates")
    folder = tmp_path / "from-wheel"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import digest, digest.cli; "
        "assert digest.__file__.startswith(sys.argv[1]), digest.__file__; "
        "sys.argv = ['digest', 'init', sys.argv[2]]; digest.cli.main()"
    )

    done = subprocess.run(
        [sys.executable, "-c", script, str(site), str(folder)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (folder / "templates").iterdir()) == sorted(
        p.name for p in packaged_templates().iterdir() if p.is_file()
    )


def test_init_where_a_folder_would_go_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "clash"
    folder.mkdir()
    (folder / "templates").write_text("a file, not a folder\n", encoding="utf-8")
    result = invoke("init", str(folder))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder / "templates") in lines[0], result.stderr


def test_init_on_a_file_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    result = invoke("init", str(target))
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# --- fetch and entries on the sample sources ----------------------------------------


def test_fetch_reports_new_then_unchanged(site: Path) -> None:
    first = invoke("fetch")
    assert first.exit_code == 0, first.output
    rows = report_rows(first.stdout)
    assert {name: r[:3] for name, r in rows.items()} == {
        LISTING: ["10", "0", "0"],
        "Cyber Policy Notes": ["4", "0", "0"],
        "AI Watch": ["3", "0", "0"],
    }
    assert all(r[3] == "ok" for r in rows.values())
    assert "17 new entries from 3 sources; 0 failed" in first.stdout

    second = invoke("fetch")
    assert second.exit_code == 0, second.output
    assert {name: r[:3] for name, r in report_rows(second.stdout).items()} == {
        LISTING: ["0", "0", "10"],
        "Cyber Policy Notes": ["0", "0", "4"],
        "AI Watch": ["0", "0", "3"],
    }
    assert len(entries_json()) == 17


def test_entries_json_lines_follow_the_contract(fetched: Path) -> None:
    rows = entries_json()
    assert len(rows) == 17
    assert len({r["id"] for r in rows}) == 17
    assert sum(1 for r in rows if r["authors"]) == 16
    for row in rows:
        assert set(row) >= ENTRY_KEYS, row
        assert row["source"] in {LISTING, "Cyber Policy Notes", "AI Watch"}
        assert row["title"].strip()
        assert isinstance(row["summary"], str)
        assert isinstance(row["authors"], list)
        for author in row["authors"]:
            assert set(author) == {"name", "affiliation"}
            assert author["name"].strip()
        published = dt.datetime.fromisoformat(row["published"])
        assert published.tzinfo is not None and published.utcoffset() is not None
        assert re.fullmatch(r"\d{4}-W\d{2}", row["week"])
        year, week, _ = published.astimezone(SHANGHAI).isocalendar()
        assert row["week"] == f"{year}-W{week:02d}"


def test_sample_listing_entries_get_sensible_themes(fetched: Path) -> None:
    listing = entries_json("--source", LISTING)
    assert len(listing) == 10
    by_day = {dt.datetime.fromisoformat(r["published"]).date(): r for r in listing}

    assert by_day[dt.date(2018, 1, 8)]["theme"] == "AI & tech competition"
    assert by_day[dt.date(2018, 1, 8)]["week"] == "2018-W02"
    assert by_day[dt.date(2017, 12, 29)]["theme"] == "Cybersecurity"
    assert by_day[dt.date(2017, 12, 27)]["theme"] == "Digital economy"
    assert by_day[dt.date(2017, 4, 18)]["theme"] == "Internet governance"
    # Bylines come before the date they belong to, so the newest entry has none.
    assert by_day[dt.date(2018, 1, 15)]["authors"] == []
    assert [a["name"] for a in by_day[dt.date(2017, 12, 27)]["authors"]] == ["Andrew Sheng", "Xiao Geng"]
    assert by_day[dt.date(2017, 12, 27)]["authors"][0]["affiliation"] == (
        "Distinguished Fellow at the Asia Global Institute at the University of Hong Kong"
    )
    # A listing date is a local day: midnight in the digest's zone.
    assert by_day[dt.date(2018, 1, 8)]["published"] == "2018-01-08T00:00:00+08:00"


def test_entries_filters(fetched: Path) -> None:
    recent = entries_json("--since", "2018-01-01")
    assert recent and len(recent) < 17
    assert all(dt.datetime.fromisoformat(r["published"]) >= dt.datetime(2018, 1, 1, tzinfo=SHANGHAI) for r in recent)

    ai = entries_json("--source", "AI Watch")
    assert len(ai) == 3 and {r["source"] for r in ai} == {"AI Watch"}
    assert all(r["theme"] == "AI & tech competition" for r in ai)

    both = entries_json("--source", LISTING, "--since", "2018-01-01")
    assert [r["published"][:10] for r in both] == ["2018-01-08", "2018-01-15"]


def test_entries_table_lists_every_entry(fetched: Path) -> None:
    result = invoke("entries")
    assert result.exit_code == 0, result.output
    assert "17 entries" in result.stdout


@pytest.mark.parametrize(
    "args",
    [("--source", "No Such Source"), ("--since", "last tuesday")],
    ids=["unknown-source", "bad-date"],
)
def test_entries_bad_arguments_exit_2_with_one_line(fetched: Path, args: tuple[str, ...]) -> None:
    result = invoke("entries", "--json", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert args[1] in result.stderr


# --- fetch over HTTP -----------------------------------------------------------------


def test_fetch_over_http_reports_failures_and_keeps_the_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feed_server: FeedServer
) -> None:
    local_config("http.toml", tmp_path, feed_server)
    monkeypatch.chdir(tmp_path)

    result = invoke("fetch")

    assert result.exit_code == 1, result.output
    rows = report_rows(result.stdout)
    assert set(rows) == {"Review RSS", "Atom Blog", "Down", "Crawl"}
    assert rows["Review RSS"][:4] == ["3", "0", "0", "ok"]
    assert rows["Atom Blog"][:4] == ["2", "0", "0", "ok"]
    assert rows["Down"][3] == "failed" and rows["Crawl"][3] == "failed"
    # Each reason on a line of its own, whole, whatever the console width.
    reasons = [line for line in result.stdout.splitlines() if ": failed: " in line]
    assert reasons == ["Down: failed: HTTP 500 Internal Server Error", "Crawl: failed: timed out after 1s"]
    assert "5 new entries from 4 sources; 2 failed" in result.stdout

    stored = entries_json()
    assert sorted({r["source"] for r in stored}) == ["Atom Blog", "Review RSS"]
    assert len(stored) == 5
    assert any(r["theme"] == "Norms" for r in stored)


def test_second_fetch_against_an_etag_route_is_not_modified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feed_server: FeedServer
) -> None:
    local_config("etag.toml", tmp_path, feed_server)
    monkeypatch.chdir(tmp_path)

    first = invoke("fetch")
    assert first.exit_code == 0, first.output
    assert report_rows(first.stdout)["Review RSS"][:4] == ["3", "0", "0", "ok"]

    second = invoke("fetch")
    assert second.exit_code == 0, second.output
    assert report_rows(second.stdout)["Review RSS"][:4] == ["0", "0", "0", "not_modified"]
    etag_requests = feed_server.requests_for("/etag/")
    assert len(etag_requests) == 2
    assert "if-none-match" in etag_requests[1].headers
    assert len(entries_json()) == 3


def test_reports_print_names_and_titles_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Titles, source names and reasons that look like console markup are text, not markup."""
    for name in ("brackets.toml", "brackets.rss.xml"):
        (tmp_path / name).write_bytes((CLI_DATA / name).read_bytes())
    (tmp_path / "brackets.toml").rename(tmp_path / "digest.toml")
    monkeypatch.chdir(tmp_path)

    fetched = invoke("fetch")
    assert fetched.exit_code == 1, fetched.output
    assert report_rows(fetched.stdout)["[dim]Brackets"][:4] == ["2", "0", "0", "ok"]
    assert f"Missing [/] file: failed: no such file: {tmp_path / 'missing.xml'}" in fetched.stdout

    listed = invoke("entries")
    assert listed.exit_code == 0, listed.output
    flat = " ".join(listed.stdout.split())
    assert "[video] Selectors" in flat and "a[href]" in flat and "Closing tags [/] in" in flat


def test_error_messages_print_verbatim(site: Path) -> None:
    result = invoke("entries", "--source", "[/] a[href]")
    assert result.exit_code == 2
    assert "'[/] a[href]'" in result.stderr


# --- bad config ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "key"),
    [("unknown-key.toml", "digest.shedule"), ("bad-timezone.toml", "digest.timezone")],
)
def test_bad_config_exits_2_with_one_line(tmp_path: Path, fixture: str, key: str) -> None:
    config = tmp_path / fixture
    config.write_bytes((CLI_DATA / fixture).read_bytes())

    result = invoke("--config", str(config), "fetch")

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0] and key in lines[0]
    assert "Traceback" not in result.output


def test_missing_config_exits_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (("fetch",), ("entries", "--json")):
        result = invoke(*args)
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert str(tmp_path / "digest.toml") in lines[0]
    assert not (tmp_path / "digest.db").exists()


def test_config_from_the_environment(fetched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_CONFIG", str(fetched / "digest.toml"))
    assert len(entries_json("--source", "AI Watch")) == 3


# --- a real process -------------------------------------------------------------------


def test_init_fetch_entries_as_a_subprocess(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("digest")
    folder = tmp_path / "proc"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1"}

    def run(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)

    assert run("init", str(folder)).returncode == 0
    fetch = run("fetch", cwd=folder)
    assert fetch.returncode == 0, fetch.stderr
    assert "17 new entries from 3 sources; 0 failed" in fetch.stdout
    assert fetch.stderr == ""
    listed = run("entries", "--json", "--source", "AI Watch", cwd=folder)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["theme"] for line in listed.stdout.splitlines()] == ["AI & tech competition"] * 3


# --- as a new editor meets them ------------------------------------------------------


def test_init_says_which_files_it_kept(tmp_path: Path) -> None:
    folder = tmp_path / "again"
    assert invoke("init", str(folder)).exit_code == 0
    (folder / "digest.toml").write_text('[digest]\ntitle = "Mine"\n', encoding="utf-8")
    (folder / "templates" / "subject.txt.j2").unlink()

    result = invoke("init", str(folder))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"kept {folder / 'digest.toml'} (exists; not overwritten)" in lines
    assert f"created {folder / 'templates' / 'subject.txt.j2'}" in lines
    kept = [line for line in lines if line.startswith("kept ")]
    assert f"kept {folder / 'templates' / 'subject.txt.j2'} (exists; not overwritten)" not in kept
    assert len(kept) == len([p for p in folder.rglob("*") if p.is_file()]) - 1
    assert (folder / "digest.toml").read_text(encoding="utf-8") == '[digest]\ntitle = "Mine"\n'


def test_entries_of_one_week_and_one_theme(fetched: Path) -> None:
    week = entries_json("--week", "2018-W02")
    assert week and {r["week"] for r in week} == {"2018-W02"}
    assert len(week) == 7
    cyber = entries_json("--theme", "Cybersecurity")
    assert cyber and {r["theme"] for r in cyber} == {"Cybersecurity"}
    both = entries_json("--week", "2018-W02", "--theme", "cybersecurity")  # case aside
    assert {r["id"] for r in both} == {r["id"] for r in week if r["theme"] == "Cybersecurity"}
    assert entries_json("--week", "2018-W09") == []
    # The filters narrow the table the same way.
    table = invoke("entries", "--week", "2018-W02", "--theme", "Cybersecurity")
    assert table.exit_code == 0 and f"{len(both)} entries" in table.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--theme", "Cyber"), ["--theme", "'Cyber'", "Cybersecurity", "AI & tech competition", "Other"]),
        (("--theme", "<script>"), ["--theme", "'<script>'", "themes:"]),
        (("--week", "2018-W54"), ["--week", "2018-W54"]),
        (("--week", "next"), ["--week", "next"]),
    ],
    ids=["unknown-theme", "hostile-theme", "no-such-week", "not-a-week"],
)
def test_entries_bad_filters_exit_2_naming_what_is_known(
    fetched: Path, args: tuple[str, ...], words: list[str]
) -> None:
    result = invoke("entries", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line
    for word in words:
        assert word in line


def test_entries_read_well_on_an_80_column_terminal(fetched: Path) -> None:
    exe = Path(sys.executable).with_name("digest")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(fetched), "NO_COLOR": "1", "COLUMNS": "80"}
    ran = subprocess.run([str(exe), "entries"], cwd=fetched, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert not any(line != line.rstrip() for line in lines), "no padding after the text"
    assert not any(ch in ran.stdout for ch in "┃│┏━"), "no table borders to break"
    assert lines[-1] == "17 entries"
    # Every title is there in full, wrapped at words under its date.
    stored = [r["title"] for r in entries_json()]
    body = " ".join(line.strip() for line in lines)
    for title in stored:
        assert " ".join(title.split()) in body, title
    dated = [line for line in lines if re.match(r"  \d{4}-\d\d-\d\d  \S", line)]
    assert len(dated) == 17
    assert any(re.fullmatch(r"\d{4}-W\d\d", line) for line in lines)
