"""Docs are tests: docs/templates.md names every variable the templates get, and what it says of overrides holds."""

from __future__ import annotations

import dataclasses
import re
import shutil
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest import placeholders
from digest.cli import cli
from digest.models import IsoWeek
from digest.render import Renderer, RenderSettings
from digest.render.view import EntryView, IssueView, SectionView, TocItem, WeekView
from tests.data.render.sample_entries import THEMES, TZ, sample_entries

DOC = (Path(__file__).parent.parent / "docs" / "templates.md").read_text(encoding="utf-8")
#: How the templates name a value of each view: the loop variables of the packaged templates.
NAMES = {IssueView: "issue", WeekView: "week", SectionView: "section", TocItem: "item", EntryView: "entry"}


def documented() -> set[str]:
    """The variables docs/templates.md lists: the first cell of each table row, in backticks (files aside)."""
    names = re.findall(r"^\| `([\w.]+)` \|", DOC, flags=re.M)
    return {name for name in names if not name.endswith((".j2", ".css"))}


def context_keys() -> set[str]:
    """Every top-level name a real rendering hands the templates (the HTML part adds ``subject``)."""
    from digest.grouping import build_issue, issue_key

    settings = RenderSettings(title="Cyber Weekly", base_url="http://127.0.0.1:8025", tz=TZ, templates_dir=None)
    renderer = Renderer(dataclasses.replace(settings, themes=tuple(t.name for t in THEMES)))
    weeks = [IsoWeek(2018, 2)]
    issue = build_issue(
        sample_entries(),
        title="Cyber Weekly",
        weeks=weeks,
        themes=THEMES,
        source_themes={},
        tz=TZ,
        key=issue_key(weeks),
    )
    view = renderer._view(issue, frozenset(), None)
    values = dict(placeholders.LEGACY.pairs())
    return set(renderer._context(view, "all", values)) | {"subject"}


def test_every_template_context_key_is_documented() -> None:
    keys = context_keys()
    assert {"title", "issue", "web_url", *placeholders.KEYS} <= keys
    missing = keys - documented()
    assert not missing, f"docs/templates.md does not name: {sorted(missing)}"


@pytest.mark.parametrize("view", sorted(NAMES, key=lambda v: v.__name__), ids=lambda v: v.__name__)
def test_every_field_of_every_view_is_documented(view: type) -> None:
    fields = {f"{NAMES[view]}.{f.name}" for f in dataclasses.fields(view)}
    missing = fields - documented()
    assert not missing, f"docs/templates.md does not name: {sorted(missing)}"
    assert f"`{view.__name__}`" in DOC


def test_documented_variables_exist() -> None:
    """The other way round: nothing documented that the templates do not get (a stale doc fails too)."""
    known = context_keys() | {f"{name}.{f.name}" for view, name in NAMES.items() for f in dataclasses.fields(view)}
    assert documented() - known == {"wrap"}  # the one filter, documented in its own table
    assert "nonexistent_key" not in documented()


def test_each_variable_has_a_type_and_an_example() -> None:
    for row in re.findall(r"^\| `[\w.]+` \|.*$", DOC, flags=re.M):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) >= 3 and all(cells[:3]), row


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_one_file_overrides_and_the_rest_is_packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/templates.md "Overriding one file": a templates/ with only subject.txt.j2 changes only the subject."""
    folder = tmp_path / "site"
    assert invoke("init", str(folder)).exit_code == 0
    monkeypatch.chdir(folder)
    assert invoke("fetch").exit_code == 0
    shutil.rmtree(folder / "templates")
    (folder / "templates").mkdir()
    (folder / "templates" / "subject.txt.j2").write_text(
        "{{ title }}: {{ issue.total }} new pieces, {{ issue.weeks_label }}\n", encoding="utf-8"
    )

    result = invoke("build", "--week", "2018-W02", "--out", "out")

    assert result.exit_code == 0, result.output
    msg = message_from_bytes((folder / "out" / "2018-W02.all.eml").read_bytes(), policy=policy.default)
    assert msg["Subject"] == "Cyber Weekly: 7 new pieces, Week 2 · 8–14 January 2018"
    html = (folder / "out" / "2018-W02.all.html").read_text(encoding="utf-8")
    assert 'class="headline"' in html and "Read more" in html  # the packaged HTML template and partials


def test_a_templates_folder_named_in_the_config_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "site"
    assert invoke("init", str(folder)).exit_code == 0
    monkeypatch.chdir(folder)
    config = folder / "digest.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[digest]\n", '[digest]\ntemplates = "my-look"\n', 1), encoding="utf-8")

    result = invoke("build", "--week", "2018-W02", "--out", "out")

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "digest.templates" in result.stderr and "my-look" in result.stderr
    # Once it exists (empty: every file falls back to the packaged ones) the build goes on.
    (folder / "my-look").mkdir()
    assert invoke("fetch").exit_code == 0
    assert invoke("build", "--week", "2018-W02", "--out", "out").exit_code == 0
    # The default folder may be absent: the packaged templates serve.
    config.write_text(text, encoding="utf-8")
    shutil.rmtree(folder / "templates")
    assert invoke("build", "--week", "2018-W02", "--out", "out2").exit_code == 0
