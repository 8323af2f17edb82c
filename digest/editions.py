"""Edition files: the editor's shaping of one issue, parsed, checked and applied.

``editions/<issue-key>.md`` holds TOML front matter between ``+++`` lines,
then a Markdown body, the editor's note::

    +++
    subject = "Ransomware goes after backups"
    pin  = ["<entry id or link>"]
    skip = ["<entry id or link>"]
    order = { "Cybersecurity" = ["<id>"] }
    archive = true
    [edit."<entry id>"]
    title = "..."
    +++
    This week's **note**.

Parsing is pure (``parse_edition``); ``check_edition`` holds an edition
against the issue it shapes (an unknown id is an error naming the file, the
key and the id); ``apply_edition`` returns the shaped issue. The note is
Markdown with raw HTML disabled, then the same sanitiser as feed HTML.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import textwrap
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digest import urls
from digest.errors import ConfigError
from digest.models import TOP_STORIES as TOP_STORIES  # the section pinned entries go to, before every theme
from digest.models import Editorial, Entry, Issue, Section

#: The largest edition file read (a note is a few paragraphs).
MAX_BYTES = 256_000
_KEYS = frozenset({"subject", "headline", "preheader", "pin", "skip", "order", "archive", "edit"})
_EDIT_KEYS = frozenset({"title", "summary"})
_FENCE = "+++"


@dataclass(frozen=True, slots=True)
class Edition:
    """What an editor set for one issue. Empty strings and tuples mean "not set"."""

    where: str
    subject: str = ""
    headline: str = ""
    preheader: str = ""
    pin: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    order: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    archive: bool = True
    edit: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    note_markdown: str = ""
    #: The sha256 of the file's bytes ("" for an edition parsed from text).
    sha256: str = ""

    def editorial(self) -> Editorial:
        """What the issue carries of this edition (the note rendered, the file's hash)."""
        return Editorial(
            sha256=self.sha256,
            subject=self.subject,
            headline=self.headline,
            preheader=self.preheader,
            note_html=self.note_html,
            note_text=self.note_text,
        )

    @property
    def note_html(self) -> str:
        """The note as sanitised HTML ("" when there is none)."""
        return note_html(self.note_markdown)

    @property
    def note_text(self) -> str:
        """The note for the text part, wrapped at 72 columns."""
        return note_text(self.note_markdown)


def edition_path(folder: Path, key: str) -> Path:
    return folder / f"{key}.md"


def load_edition(folder: Path, key: str) -> Edition | None:
    """The edition of issue ``key`` in ``folder``, or None when there is no file."""
    path = edition_path(folder, key)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: over {MAX_BYTES} bytes; an edition holds a note, not the issue")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    edition = parse_edition(text, str(path))
    return dataclasses.replace(edition, sha256=hashlib.sha256(data).hexdigest())


def edition_sha256(folder: Path, key: str) -> str:
    """The sha256 of issue ``key``'s edition file as it is now; "" when there is none or it cannot be read."""
    try:
        return hashlib.sha256(edition_path(folder, key).read_bytes()).hexdigest()
    except OSError:
        return ""


def split_front_matter(text: str, where: str) -> tuple[str, str]:
    """``(front matter, body)``; the front matter is "" when the file has none."""
    text = text.lstrip("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != _FENCE:
        return "", text
    for i in range(1, len(lines)):
        if lines[i].strip() == _FENCE:
            return "".join(lines[1:i]), "".join(lines[i + 1 :])
    raise ConfigError(f"{where}: the front matter opened with +++ on line 1 is never closed with +++")


def parse_edition(text: str, where: str) -> Edition:
    """Parse an edition file's text; ``ConfigError`` naming ``where`` and the key when it is wrong."""
    front, body = split_front_matter(text, where)
    try:
        data = tomllib.loads(front)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: front matter is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: unknown key (known: {', '.join(sorted(_KEYS))})")

    def text_key(key: str) -> str:
        value = data.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key}: must be a string, got {value!r}")
        if "\n" in value or "\r" in value:
            raise ConfigError(f"{where}: {key}: must be one line")
        return " ".join(value.split())

    def ids(value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key}: must be a list of entry ids or links")
        return tuple(v.strip() for v in value if v.strip())

    order_raw = data.get("order", {})
    if not isinstance(order_raw, dict):
        raise ConfigError(f"{where}: order: must be a table of theme = [ids]")
    edit_raw = data.get("edit", {})
    if not isinstance(edit_raw, dict):
        raise ConfigError(f'{where}: edit: must be tables like [edit."<entry id>"]')
    edits: dict[str, dict[str, str]] = {}
    for eid, fields in edit_raw.items():
        if not isinstance(fields, dict):
            raise ConfigError(f"{where}: edit.{eid}: must be a table with title and/or summary")
        bad = sorted(set(fields) - _EDIT_KEYS)
        if bad:
            raise ConfigError(f"{where}: edit.{eid}.{bad[0]}: unknown key (known: summary, title)")
        for k, v in fields.items():
            if not isinstance(v, str):
                raise ConfigError(f"{where}: edit.{eid}.{k}: must be a string")
        edits[eid] = {k: v.strip() for k, v in fields.items()}
    archive = data.get("archive", True)
    if not isinstance(archive, bool):
        raise ConfigError(f"{where}: archive: must be true or false, got {archive!r}")
    return Edition(
        where=where,
        subject=text_key("subject"),
        headline=text_key("headline"),
        preheader=text_key("preheader"),
        pin=ids(data.get("pin", []), "pin"),
        skip=ids(data.get("skip", []), "skip"),
        order={theme: ids(v, f"order.{theme}") for theme, v in order_raw.items()},
        archive=archive,
        edit=edits,
        note_markdown=body.strip(),
    )


def _index(entries: Sequence[Entry]) -> dict[str, Entry]:
    """Entries by id, by link and by canonical link: an editor may paste either."""
    out: dict[str, Entry] = {}
    for e in entries:
        if e.link:
            out.setdefault(e.link, e)
            with contextlib.suppress(urls.InvalidURL):
                out.setdefault(urls.canonical(e.link), e)
    for e in entries:
        out[e.id] = e  # an id always wins over a link that happens to look like one
    return out


def _find(index: Mapping[str, Entry], ref: str) -> Entry | None:
    hit = index.get(ref)
    if hit is None:
        try:
            hit = index.get(urls.canonical(ref))
        except urls.InvalidURL:
            return None
    return hit


def check_edition(edition: Edition, issue: Issue) -> None:
    """Every id and theme the edition names must be in ``issue``; one ``ConfigError`` for the first that is not."""
    index = _index(issue.entries)
    where = edition.where

    def need(ref: str, key: str) -> Entry:
        entry = _find(index, ref)
        if entry is None:
            raise ConfigError(f"{where}: {key}: no entry {ref!r} in issue {issue.key}")
        return entry

    pinned = {need(ref, "pin").id for ref in edition.pin}
    for ref in edition.skip:
        if need(ref, "skip").id in pinned:
            raise ConfigError(f"{where}: skip: {ref!r} is also pinned")
    themes = set(issue.themes)
    for theme, refs in edition.order.items():
        if theme not in themes:
            raise ConfigError(f"{where}: order: no section {theme!r} in issue {issue.key}")
        for ref in refs:
            need(ref, f"order.{theme}")
    for ref in edition.edit:
        need(ref, "edit")


def apply_edition(edition: Edition, issue: Issue) -> Issue:
    """``issue`` shaped by ``edition``: skips dropped, edits applied, pins first, orders honoured.

    Checks first (``check_edition``). Pinned entries leave their theme for a
    "Top stories" section that leads the issue, in the edition's order.
    """
    check_edition(edition, issue)
    index = _index(issue.entries)

    def ids(refs: Sequence[str]) -> list[str]:
        found = [_find(index, r) for r in refs]
        return list(dict.fromkeys(e.id for e in found if e is not None))

    skipped = set(ids(edition.skip))
    pinned = ids(edition.pin)
    edits = {e.id: f for ref, f in edition.edit.items() if (e := _find(index, ref)) is not None}

    def edited(entry: Entry) -> Entry:
        changes = edits.get(entry.id)
        if not changes:
            return entry
        return dataclasses.replace(
            entry,
            title=changes.get("title") or entry.title,
            summary=changes.get("summary", entry.summary),
            title_derived=entry.title_derived and "title" not in changes,
        )

    sections: list[Section] = []
    by_id = {e.id: e for e in issue.entries}
    if pinned:
        week = max(issue.weeks)
        sections.append(Section(TOP_STORIES, week, tuple(edited(by_id[i]) for i in pinned)))
    leave = skipped | set(pinned)
    for section in issue.sections:
        kept = [e for e in section.entries if e.id not in leave]
        first = ids(edition.order.get(section.theme, ()))
        rank = {eid: n for n, eid in enumerate(first)}
        kept.sort(key=lambda e: rank.get(e.id, len(rank)))  # stable: the rest keep their order
        if kept:
            sections.append(dataclasses.replace(section, entries=tuple(edited(e) for e in kept)))
    return dataclasses.replace(issue, sections=tuple(sections), editorial=edition.editorial())


def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # CommonMark with raw HTML off: a <script> in the note is shown as text, never run.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("strikethrough")


def note_html(markdown: str) -> str:
    """The note as HTML: Markdown (raw HTML off), then the feed sanitiser."""
    if not markdown.strip():
        return ""
    from digest.render.sanitize import sanitize_html

    return sanitize_html(_markdown().render(markdown))


def note_text(markdown: str, width: int = 72) -> str:
    """The note as plain text, each block (paragraph, list item) wrapped at ``width`` columns.

    Links keep their address in brackets after the words, since a text part has no anchors.
    """
    if not markdown.strip():
        return ""
    from markdown_it.tree import SyntaxTreeNode

    blocks: list[str] = []

    def words(node: SyntaxTreeNode) -> str:
        out = []
        for child in node.children:
            if child.type == "text" or child.type == "code_inline":
                out.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                out.append(" ")
            elif child.type == "link":
                inner = words(child)
                href = str(child.attrs.get("href", ""))
                out.append(f"{inner} <{href}>" if href and href != inner else inner)
            else:
                out.append(words(child))
        return "".join(out)

    def walk(node: SyntaxTreeNode, prefix: str) -> None:
        for child in node.children:
            if child.type == "inline":
                blocks.append(prefix + " ".join(words(child).split()))
            elif child.type == "list_item":
                walk(child, "- ")
            elif child.type in ("fence", "code_block"):
                blocks.append(child.content.rstrip("\n"))
            else:
                walk(child, prefix)

    walk(SyntaxTreeNode(_markdown().parse(markdown)), "")
    wrapped = []
    for block in blocks:
        if "\n" in block:  # code keeps its lines
            wrapped.append(block)
            continue
        indent = "  " if block.startswith("- ") else ""
        wrapped.append(
            textwrap.fill(block, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
        )
    return "\n\n".join(b for b in wrapped if b.strip())


def template_for(issue: Issue) -> str:
    """A new edition file for ``issue``: every key commented out, every entry listed as a comment."""
    lines = [
        _FENCE,
        f"# Edition of issue {issue.key} ({issue.title}). Uncomment what you need.",
        "# The editor's note goes below the closing +++, in Markdown.",
        '# subject = ""          # replaces the subject line',
        '# headline = ""         # replaces the lede line',
        '# preheader = ""        # the inbox preview text',
        "# pin = []              # ids or links: a Top stories section first, in this order",
        "# skip = []             # ids or links left out of every variant",
        '# order = { }           # e.g. { "Cybersecurity" = ["<id>"] }: listed first in that section',
        "# archive = true        # false: never in the public archive",
        '# [edit."<entry id>"]',
        '# title = ""',
        '# summary = ""',
        "#",
        "# Entries of this issue: id, source, title",
    ]
    for section in issue.sections:
        lines.append(f"# -- {section.theme} ({section.week})")
        for e in section.entries:
            title = " ".join(e.title.split())
            lines.append(f'#   "{e.id}"  {e.source}: {title}')
    lines += [_FENCE, ""]
    return "\n".join(lines)
