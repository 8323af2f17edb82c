"""OPML 2.0 subscription lists: read the feeds out of one, write the sources into one.

The format rss2email, feed readers and podcast apps trade feed lists in.
Reading is hostile-input parsing: no DTD, no entities, no network, a size
cap, and every ``outline`` checked on its own (a bad one is reported by its
position and skipped, never the whole file). Only ``xmlUrl`` outlines are
feeds; nested outlines (folders) are walked, and a folder's title is kept as
the feed's category.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import format_datetime
from xml.sax.saxutils import quoteattr

from lxml import etree

from digest import urls
from digest.errors import ConfigError

#: An OPML file bigger than this is not a subscription list.
MAX_BYTES = 5_000_000


@dataclass(frozen=True, slots=True)
class Outline:
    """One feed of an OPML file: its title, feed URL, web page and folder."""

    title: str
    url: str
    html_url: str = ""
    category: str = ""


@dataclass(frozen=True, slots=True)
class ReadOpml:
    """The feeds an OPML file lists, and one line per outline that was skipped."""

    outlines: tuple[Outline, ...]
    problems: tuple[str, ...] = ()


def read_opml(data: bytes, where: str) -> ReadOpml:
    """The feed outlines of ``data``; ``ConfigError`` naming ``where`` if it is not OPML at all."""
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{where}: over {MAX_BYTES} bytes; not an OPML subscription list")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, dtd_validation=False, load_dtd=False, huge_tree=False
    )
    if b"<!ENTITY" in data or b"<!DOCTYPE" in data.upper():
        raise ConfigError(f"{where}: a DOCTYPE or entity declaration is not allowed in OPML")
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ConfigError(f"{where}: not well-formed XML: {exc}") from exc
    if root is None or etree.QName(root).localname != "opml":
        raise ConfigError(f"{where}: the root element is not <opml>")
    body = root.find("body")
    if body is None:
        raise ConfigError(f"{where}: no <body> element")
    found: list[Outline] = []
    problems: list[str] = []
    for number, (node, category) in enumerate(_outlines(body, ""), start=1):
        raw = (node.get("xmlUrl") or node.get("xmlurl") or "").strip()
        if not raw:
            continue  # a folder, or a plain text outline
        title = " ".join((node.get("title") or node.get("text") or "").split())
        try:
            url = urls.http_url(raw)
        except urls.InvalidURL as exc:
            problems.append(f"{where}: outline {number} ({title or raw!r}): {exc}")
            continue
        html_url = (node.get("htmlUrl") or node.get("htmlurl") or "").strip()
        try:
            html_url = urls.http_url(html_url) if html_url else ""
        except urls.InvalidURL:
            html_url = ""  # only a courtesy link; the feed itself is fine
        found.append(Outline(title=title, url=url, html_url=html_url, category=category))
    return ReadOpml(tuple(found), tuple(problems))


def _outlines(parent: etree._Element, category: str) -> list[tuple[etree._Element, str]]:
    """Every ``outline`` below ``parent`` in document order, with its folder's title.

    Iterative, so a file nested ten thousand deep costs a loop, not the stack.
    """
    out: list[tuple[etree._Element, str]] = []
    stack: list[tuple[etree._Element, str]] = [(parent, category)]
    while stack:
        node, cat = stack.pop()
        children = [c for c in node if isinstance(c.tag, str) and etree.QName(c).localname == "outline"]
        for child in reversed(children):
            folder = cat
            if not (child.get("xmlUrl") or child.get("xmlurl")):
                folder = " ".join((child.get("title") or child.get("text") or "").split()) or cat
            stack.append((child, folder))
        if node is not parent:
            out.append((node, cat))
    return out


def write_opml(title: str, outlines: Sequence[Outline], now: dt.datetime) -> str:
    """An OPML 2.0 document listing ``outlines`` (folders by category, in first-seen order)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "  <head>",
        f"    <title>{_text(title)}</title>",
        f"    <dateCreated>{_text(format_datetime(now.astimezone(dt.UTC)))}</dateCreated>",
        "  </head>",
        "  <body>",
    ]
    folders: dict[str, list[Outline]] = {}
    for outline in outlines:
        folders.setdefault(outline.category, []).append(outline)
    for category, members in folders.items():
        indent = "    "
        if category:
            lines.append(f"    <outline text={quoteattr(category)} title={quoteattr(category)}>")
            indent = "      "
        for o in members:
            attrs = f'type="rss" text={quoteattr(o.title)} title={quoteattr(o.title)} xmlUrl={quoteattr(o.url)}'
            if o.html_url:
                attrs += f" htmlUrl={quoteattr(o.html_url)}"
            lines.append(f"{indent}<outline {attrs}/>")
        if category:
            lines.append("    </outline>")
    lines += ["  </body>", "</opml>", ""]
    return "\n".join(lines)


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
