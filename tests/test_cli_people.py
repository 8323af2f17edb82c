"""``digest subscribers``: untrusted text printed as text, usage errors exit 2, list files stay in subscribers/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli

#: Text that rich would take as markup: a closing tag with nothing open raises MarkupError.
MARKUP = "Eve [/b] x [bold]y"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An init'ed working folder, made the current directory; a wide terminal so table cells don't wrap."""
    folder = tmp_path / "site"
    assert invoke("init", str(folder)).exit_code == 0
    monkeypatch.chdir(folder)
    monkeypatch.setenv("COLUMNS", "200")
    return folder


def listed(site: Path) -> list[dict[str, object]]:
    result = invoke("subscribers", "list", "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_names_with_markup_are_printed_as_they_are(site: Path) -> None:
    added = invoke("subscribers", "add", "eve@example.org", "--name", MARKUP)
    assert added.exit_code == 0, added.output
    assert added.stdout == "added eve@example.org\n"
    table = invoke("subscribers", "list")
    assert table.exit_code == 0, table.output
    assert MARKUP in table.stdout
    assert {"email": "eve@example.org", "name": MARKUP} in [
        {"email": row["email"], "name": row["name"]} for row in listed(site)
    ]


def test_problem_lines_from_list_files_are_printed_as_they_are(site: Path) -> None:
    (site / "subscribers" / "more.csv").write_text("email,name\n[/b]bad@example.org,Bad\n", encoding="utf-8")
    result = invoke("subscribers", "list")
    assert result.exit_code == 0, result.output
    problems = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(problems) == 1
    assert "subscribers/more.csv:2: invalid address '[/b]bad@example.org'" in problems[0]


def test_import_reports_skipped_rows_as_they_are_and_exits_1(site: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(f"email,name\nnew@example.org,{MARKUP}\n[/i]nope@,X\nada@example.org,Ada again\n", encoding="utf-8")
    result = invoke("subscribers", "import", str(src))
    assert result.exit_code == 1
    assert result.stdout == "imported 1, 1 already subscribed\n"
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 1 and "invalid address '[/i]nope@'" in skipped[0]
    assert {"email": "new@example.org", "name": MARKUP} in [
        {"email": row["email"], "name": row["name"]} for row in listed(site)
    ]


@pytest.mark.parametrize(
    ("address", "why"),
    [("bob@", "invalid address 'bob@'"), ("not an address", "invalid address 'not an address'")],
)
def test_adding_a_bad_address_is_a_usage_error(site: Path, address: str, why: str) -> None:
    before = (site / "subscribers" / "subscribers.csv").read_bytes()
    result = invoke("subscribers", "add", address)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {why}: ")
    assert (site / "subscribers" / "subscribers.csv").read_bytes() == before


def test_adding_an_address_twice_is_a_usage_error(site: Path) -> None:
    result = invoke("subscribers", "add", "ADA@example.org")
    assert result.exit_code == 2
    assert result.stderr == "error: ADA@example.org is already subscribed\n"


BAD_LISTS = ["../x.csv", "sub/x.csv", "..\\x.csv", ".x.csv", ".csv", "x.txt", "x.CSV", "", "/tmp/x.csv", "x\x00.csv"]


@pytest.mark.parametrize("name", BAD_LISTS)
def test_add_refuses_a_list_that_is_not_a_plain_csv_name(site: Path, name: str) -> None:
    before = sorted(p.relative_to(site.parent) for p in site.parent.rglob("*") if "digest.db" not in p.name)
    result = invoke("subscribers", "add", "new@example.org", "--list", name)
    assert result.exit_code == 2
    assert result.stderr == f"error: --list: not a plain file name ending in .csv: {name!r}\n"
    after = sorted(p.relative_to(site.parent) for p in site.parent.rglob("*") if "digest.db" not in p.name)
    assert after == before


@pytest.mark.parametrize("name", BAD_LISTS)
def test_import_refuses_a_list_that_is_not_a_plain_csv_name(site: Path, tmp_path: Path, name: str) -> None:
    src = tmp_path / "in.csv"
    src.write_text("email\nnew@example.org\n", encoding="utf-8")
    result = invoke("subscribers", "import", str(src), "--list", name)
    assert result.exit_code == 2
    assert result.stderr == f"error: --list: not a plain file name ending in .csv: {name!r}\n"
    assert not (tmp_path / "x.csv").exists() and not (site / "x.csv").exists()
    assert "new@example.org" not in [row["email"] for row in listed(site)]


def test_a_plain_list_name_is_written_in_subscribers(site: Path, tmp_path: Path) -> None:
    assert invoke("subscribers", "add", "new@example.org", "--list", "extra.csv").exit_code == 0
    src = tmp_path / "in.csv"
    src.write_text("email\nmore@example.org\n", encoding="utf-8")
    assert invoke("subscribers", "import", str(src), "--list", "extra.csv").exit_code == 0
    lines = (site / "subscribers" / "extra.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[0] for line in lines] == ["email", "new@example.org", "more@example.org"]


def _set_status(site: Path, email: str, status: str) -> None:
    import datetime as dt

    from digest import pipeline
    from digest.config import load_config
    from digest.models import SubscriberStatus

    config = load_config(site / "digest.toml", env={})
    with pipeline.open_store(config) as store:
        when = dt.datetime(2018, 1, 10, 8, 30, tzinfo=dt.UTC)
        store.set_status(email, SubscriberStatus(status), when, "link")


def _events(site: Path, email: str) -> list[tuple[str, str]]:
    from digest import pipeline
    from digest.config import load_config

    with pipeline.open_store(load_config(site / "digest.toml", env={})) as store:
        return [(e.event, e.reason) for e in store.subscriber_events(email)]


@pytest.mark.parametrize("status", ["unsubscribed", "bounced"])
def test_adding_an_address_that_left_says_so_and_reactivate_brings_it_back(site: Path, status: str) -> None:
    _set_status(site, "Gone@Example.org", status)
    added = invoke("subscribers", "add", "gone@example.org")
    assert added.exit_code == 0, added.output
    assert "added" not in added.stdout
    assert added.stdout.startswith(f"gone@example.org is {status} (since 2018-01-10 08:30 UTC")
    assert "use `digest subscribers reactivate" in added.stdout
    assert next(r for r in listed(site) if r["email"] == "gone@example.org")["status"] == status
    again = invoke("subscribers", "add", "gone@example.org")  # now also on the list: still the same notice
    assert again.exit_code == 0 and f"is {status}" in again.stdout, again.output

    back = invoke("subscribers", "reactivate", "gone@example.org", "--reason", "asked by phone\non 2018-01-20")
    assert back.exit_code == 0, back.output
    assert back.stdout.startswith(f"re-activated gone@example.org (was {status} since 2018-01-10 08:30 UTC)")
    assert next(r for r in listed(site) if r["email"] == "gone@example.org")["status"] == "active"
    assert _events(site, "gone@example.org") == [(status, "link"), ("reactivated", "asked by phone on 2018-01-20")]
    twice = invoke("subscribers", "reactivate", "gone@example.org", "--reason", "again")
    assert twice.exit_code == 1 and "not unsubscribed or bounced" in twice.output


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ((), "Missing option '--reason'"),
        (("--reason", "   "), "--reason: say why"),
        (("--reason", "a\x1b[2Jb"), "--reason: say why"),
        (("--reason", "x" * 501), "at most 500 characters"),
    ],
)
def test_reactivate_needs_a_real_reason(site: Path, args: tuple[str, ...], why: str) -> None:
    _set_status(site, "gone@example.org", "unsubscribed")
    result = invoke("subscribers", "reactivate", "gone@example.org", *args)
    assert result.exit_code == 2 and why in result.output, result.output
    assert _events(site, "gone@example.org") == [("unsubscribed", "link")]


def test_reactivate_refuses_a_bad_address(site: Path) -> None:
    result = invoke("subscribers", "reactivate", "not an address", "--reason", "x")
    assert result.exit_code == 2, result.output
