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
