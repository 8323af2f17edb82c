"""Edition files: parsing (hostile beside good), checking against the issue, applying, the note."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.editions import TOP_STORIES, apply_edition, load_edition, note_text, parse_edition, template_for
from digest.errors import ConfigError
from digest.models import Entry, IsoWeek, Issue, Section

W = IsoWeek(2018, 2)
UTC = dt.UTC


def entry(eid: str, title: str, link: str | None = None) -> Entry:
    return Entry(
        id=eid,
        source="Feed",
        title=title,
        link=link,
        summary=f"About {title}.",
        published=dt.datetime(2018, 1, 9, tzinfo=UTC),
    )


ISSUE = Issue(
    key="2018-W02",
    title="Cyber Weekly",
    weeks=(W,),
    sections=(
        Section(
            "Cybersecurity",
            W,
            (
                entry("a1", "Backups hit", "https://ex.org/a1?utm_source=x"),
                entry("a2", "Patch day"),
                entry("a3", "Phishing kit"),
            ),
        ),
        Section("AI", W, (entry("b1", "Model leak"), entry("b2", "Chip rules"))),
    ),
)

GOOD = """+++
subject = "Ransomware goes after backups"
headline = "The week backups stopped being safe"
preheader = "Plus: what Meltdown patches cost"
pin = ["b2", "https://ex.org/a1"]
skip = ["a2"]
order = { "AI" = ["b1"], "Cybersecurity" = ["a3"] }
archive = false
[edit."b1"]
title = "A model's weights leak"
summary = "Fixed summary."
+++
This week's **note**, in Markdown.

A second paragraph with a [link](https://example.org/read) and <script>alert(1)</script>.
"""


def test_a_good_edition_parses_every_key() -> None:
    ed = parse_edition(GOOD, "editions/2018-W02.md")
    assert ed.subject == "Ransomware goes after backups"
    assert ed.headline.startswith("The week") and ed.preheader.startswith("Plus")
    assert ed.pin == ("b2", "https://ex.org/a1") and ed.skip == ("a2",)
    assert ed.order == {"AI": ("b1",), "Cybersecurity": ("a3",)}
    assert ed.archive is False
    assert ed.edit == {"b1": {"title": "A model's weights leak", "summary": "Fixed summary."}}
    assert ed.note_markdown.startswith("This week's **note**")


def test_the_note_is_markdown_without_raw_html() -> None:
    ed = parse_edition(GOOD, "e.md")
    html = ed.note_html
    assert "<strong>note</strong>" in html
    assert '<a href="https://example.org/read"' in html
    assert "<script" not in html and "&lt;script&gt;" in html  # shown as text, never run
    hostile = parse_edition("[x](javascript:alert(1)) ![i](http://t.example/p.gif)", "e.md").note_html
    assert 'href="javascript' not in hostile and "<img" not in hostile


def test_the_text_note_is_wrapped_at_72_columns() -> None:
    text = note_text("word " * 60 + "\n\nSecond paragraph **bold**.")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 72
    assert lines[-1] == "Second paragraph bold."
    assert "" in lines  # paragraphs stay apart
    linked = note_text("Read [the report](https://example.org/r) and\n\n- one\n- two")
    assert linked == "Read the report <https://example.org/r> and\n\n- one\n\n- two"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("+++\nsubjet = 'x'\n+++\n", "e.md: subjet: unknown key"),
        ("+++\nsubject = 3\n+++\n", "e.md: subject: must be a string"),
        ('+++\nsubject = "a\\nBcc: x@y"\n+++\n', "e.md: subject: must be one line"),
        ("+++\npin = 'a1'\n+++\n", "e.md: pin: must be a list"),
        ("+++\norder = ['a1']\n+++\n", "e.md: order: must be a table"),
        ("+++\narchive = 'no'\n+++\n", "e.md: archive: must be true or false"),
        ("+++\n[edit.a1]\nheadline = 'x'\n+++\n", "e.md: edit.a1.headline: unknown key"),
        ("+++\nsubject = \n+++\n", "e.md: front matter is not valid TOML"),
        ("+++\nsubject = 'x'\n", "e.md: the front matter opened with +++ on line 1 is never closed"),
    ],
)
def test_a_bad_edition_is_one_line_naming_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("+", r"\+").replace("(", r"\(")) as info:
        parse_edition(text, "e.md")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("front", "message"),
    [
        ('pin = ["zz"]', "e.md: pin: no entry 'zz' in issue 2018-W02"),
        ('skip = ["https://nowhere.example/"]', "e.md: skip: no entry 'https://nowhere.example/'"),
        ('order = { "Space" = [] }', "e.md: order: no section 'Space'"),
        ('order = { "AI" = ["q"] }', "e.md: order.AI: no entry 'q'"),
        ('[edit."nope"]\ntitle = "x"', "e.md: edit: no entry 'nope'"),
        ('pin = ["a1"]\nskip = ["a1"]', "e.md: skip: 'a1' is also pinned"),
    ],
)
def test_an_unknown_id_names_file_key_and_id(front: str, message: str) -> None:
    ed = parse_edition(f"+++\n{front}\n+++\n", "e.md")
    with pytest.raises(ConfigError, match="^" + message):
        apply_edition(ed, ISSUE)


def test_apply_pins_skips_orders_and_edits() -> None:
    shaped = apply_edition(parse_edition(GOOD, "e.md"), ISSUE)
    assert [s.theme for s in shaped.sections] == [TOP_STORIES, "Cybersecurity", "AI"]
    assert [e.id for e in shaped.sections[0].entries] == ["b2", "a1"]  # by id and by canonical link
    assert [e.id for e in shaped.sections[1].entries] == ["a3"]  # a1 pinned, a2 skipped
    ai = shaped.sections[2].entries
    assert [e.id for e in ai] == ["b1"]
    assert (ai[0].title, ai[0].summary) == ("A model's weights leak", "Fixed summary.")
    assert "a2" not in {e.id for e in shaped.entries}
    assert len(shaped.entries) == len(ISSUE.entries) - 1


def test_a_section_emptied_by_pins_and_skips_disappears() -> None:
    ed = parse_edition('+++\npin = ["b1"]\nskip = ["b2"]\n+++\n', "e.md")
    assert [s.theme for s in apply_edition(ed, ISSUE).sections] == [TOP_STORIES, "Cybersecurity"]


def test_no_front_matter_is_all_note(tmp_path: Path) -> None:
    (tmp_path / "2018-W02.md").write_text("Just a note.\n")
    ed = load_edition(tmp_path, "2018-W02")
    assert ed is not None and ed.note_markdown == "Just a note." and ed.pin == ()
    assert load_edition(tmp_path, "2018-W03") is None


def test_a_non_utf8_or_huge_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_bytes(b"+++\n\xff\xfe\n+++\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_edition(tmp_path, "a")
    (tmp_path / "b.md").write_text("x" * 300_000)
    with pytest.raises(ConfigError, match="over 256000 bytes"):
        load_edition(tmp_path, "b")


def test_the_template_parses_and_lists_every_entry() -> None:
    text = template_for(ISSUE)
    ed = parse_edition(text, "t.md")
    assert ed.pin == () and ed.note_markdown == ""
    for e in ISSUE.entries:
        assert f'"{e.id}"  Feed: {e.title}' in text
    hostile = Issue("2018-W02", "T", (W,), (Section("X", W, (entry("c1", "Title\n+++\nsubject = 'owned'"),)),))
    assert parse_edition(template_for(hostile), "t.md").subject == ""


def test_digest_edit_creates_the_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    site = tmp_path / "site"
    assert runner.invoke(cli, ["init", str(site)]).exit_code == 0
    monkeypatch.chdir(site)
    assert runner.invoke(cli, ["fetch"]).exit_code == 0
    first = runner.invoke(cli, ["edit", "--week", "2018-W02"])
    assert first.exit_code == 0, first.output
    path = site / "editions" / "2018-W02.md"
    assert first.output.strip() == str(path)
    text = path.read_text()
    assert "# Entries of this issue" in text and text.count('#   "') >= 3
    path.write_text(text + "My note.\n")
    again = runner.invoke(cli, ["edit", "--week", "2018-W02"])
    assert again.exit_code == 0 and "exists; left as it is" in again.output
    assert path.read_text().endswith("My note.\n")
