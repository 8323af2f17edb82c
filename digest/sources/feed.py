"""Feeds: RSS 0.9x/1.0/2.0 and Atom through feedparser, JSON Feed by hand.

feedparser is only ever handed bytes in memory (never a URL or a path: it
would fetch or open them). Before it sees them the bytes are decoded with
``text.decode`` (which copes with wrong charset labels) and re-encoded as
UTF-8, so feedparser's own charset guessing has nothing left to get wrong.
Documents declaring XML entities are refused outright: no expansion bombs,
no external entities. JSON is refused before parsing when it nests deeper
than ``MAX_JSON_DEPTH`` (a linear, non-recursive scan) and while parsing
when a number has more than ``MAX_NUMBER_DIGITS`` characters.

One bad part never costs the source: a bad link is dropped from its entry,
an out-of-range date is treated as missing, an entry that cannot be read at
all is left out, each counted in the ``Tally`` (see ``limits``).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import feedparser

from digest.errors import ParseError
from digest.models import Author, Entry, Source
from digest.sources.dates import parse_date, read_date
from digest.sources.ids import IdInput, assign_ids
from digest.sources.limits import Tally, newest, prune_feed_xml
from digest.sources.text import collapse, decode, headline, html_to_text, one_line

_ENTITY_DECL = re.compile(r"<!ENTITY", re.I)
_XML_ENCODING = re.compile(r"^(\s*<\?xml[^>]*?encoding\s*=\s*[\"'])[^\"']*", re.I)
_XML_ROOTS = re.compile(r"^\s*(?:<\?xml|<rss\b|<feed\b|<rdf:RDF\b|<RDF\b)", re.I)
_HTML_PAGE = re.compile(r"^\s*(?:<!--.*?-->\s*)*(?:<!DOCTYPE\s+html|<html\b)", re.I | re.S)
_JSON_TYPES = ("application/feed+json", "application/json")
_JSONFEED_VERSION = "https://jsonfeed.org/version/"
#: A summary made from full content is cut to about this many characters.
SUMMARY_FROM_CONTENT = 500
#: Deepest nesting of JSON arrays and objects read (a JSON Feed needs about 4).
MAX_JSON_DEPTH = 64
#: Longest JSON number read, in characters (int() refuses 4,300 digits; no feed needs 20).
MAX_NUMBER_DIGITS = 100
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def parse_feed(
    source: Source,
    body: bytes,
    content_type: str,
    url: str,
    tz: ZoneInfo,
    tally: Tally | None = None,
    max_entries: int | None = None,
) -> list[Entry]:
    """The entries of a feed document.

    ``content_type`` is the response's header ("" for a local file), ``url``
    where the bytes came from (after redirects; relative links resolve
    against it). Raises ``ParseError`` when the bytes are not a feed.
    What was dropped on the way is counted in ``tally``. With
    ``max_entries`` only that many of the newest items are read at all.
    """
    tally = tally if tally is not None else Tally()
    text = decode(body, content_type).text
    if not text.strip():
        raise ParseError(source.name, "not a feed: the body is empty")
    if _ENTITY_DECL.search(text):
        raise ParseError(source.name, "XML entity declarations are refused")
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES or text.lstrip().startswith("{"):
        return _json_feed(source, text, url, tz, tally, max_entries)
    return _xml_feed(source, text, media, url, tz, tally, max_entries)


def _xml_feed(
    source: Source, text: str, media: str, url: str, tz: ZoneInfo, tally: Tally, max_entries: int | None
) -> list[Entry]:
    if _XML_ROOTS.match(text) or not media:
        media = "application/xml"
    data = _XML_ENCODING.sub(r"\1utf-8", text, count=1).encode("utf-8")
    if max_entries is not None:
        data = prune_feed_xml(data, max_entries, tz, tally)
    parsed: Any = feedparser.parse(
        io.BytesIO(data),
        response_headers={"content-type": f"{media}; charset=utf-8", "content-location": url},
        resolve_relative_uris=True,
        sanitize_html=False,
    )
    version = parsed.get("version", "")
    bozo = parsed.get("bozo", False)
    entries = parsed.get("entries", [])
    if not version and _HTML_PAGE.match(text):
        raise ParseError(source.name, "not a feed: got an HTML page (the site's address rather than its feed?)")
    if not entries:
        if bozo:
            what = "malformed feed" if version else "not a feed"
            raise ParseError(source.name, f"{what}: {one_line(parsed.get('bozo_exception', 'unreadable'))}")
        if not version:
            raise ParseError(source.name, "not a feed: no RSS, Atom or JSON Feed document found")
        return []
    feed = parsed.get("feed", {})
    feed_authors = _authors(feed.get("authors") or [])
    drafts: list[Entry] = []
    guids: list[str | None] = []
    for e in entries:
        try:
            draft = _xml_entry(source, e, url, tz, tally, feed_authors)
        except Exception:  # one unreadable entry is left out (counted), never its source
            tally.dropped_entries += 1
            continue
        if draft is not None:
            drafts.append(draft)
            guids.append(_guid(e.get("id")))
    if not drafts and bozo:
        raise ParseError(source.name, f"malformed feed: {one_line(parsed.get('bozo_exception', 'unreadable'))}")
    return _with_ids(source, drafts, guids, [url, feed.get("link", "")])


def _xml_entry(
    source: Source, e: Any, url: str, tz: ZoneInfo, tally: Tally, feed_authors: tuple[Author, ...]
) -> Entry | None:
    link = tally.link(url, _text(e.get("link")))
    content = ""
    if e.get("content"):
        part = e.content[0]
        value = str(part.get("value", ""))
        content = value if "html" in str(part.get("type", "text/html")) else html.escape(value)
    summary = _plain(e.get("summary", ""), e.get("summary_detail"))
    if not summary and content:
        summary = _shorten(html_to_text(content))
    raw_date = e.get("published") or e.get("updated") or e.get("created")
    found = read_date(str(raw_date), tz) if raw_date else None
    if found is None:
        found = _stamp(e.get("published_parsed") or e.get("updated_parsed"))
    published = tally.checked(found)
    title = _plain(e.get("title", ""), e.get("title_detail"))
    if not (title or summary or link):
        return None  # nothing to show: debris of a malformed document
    return _draft(
        source,
        title=title,
        link=link,
        summary=summary,
        content=content,
        authors=_authors(e.get("authors") or []) or feed_authors,
        published=published,
        tags=(t.get("term") or t.get("label") or "" for t in e.get("tags") or []),
    )


def _stamp(stamp: Any) -> dt.datetime | None:
    """feedparser's own reading of a date (a UTC struct_time), when ours found none."""
    try:
        return dt.datetime(*stamp[:6]).replace(tzinfo=dt.UTC) if stamp else None
    except (TypeError, ValueError, OverflowError):
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _guid(value: object) -> str | None:
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def json_depth_ok(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests arrays and objects at most ``limit`` deep.

    A linear scan without recursion: strings are skipped (brackets inside
    them do not count), then brackets are counted.
    """
    depth = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub('""', text)):
        if m.group() in "[{":
            depth += 1
            if depth > limit:
                return False
        else:
            depth -= 1
    return True


class _NumberTooLong(ValueError):
    pass


def _number(kind: type[int] | type[float]) -> Any:
    def read(digits: str) -> int | float:
        if len(digits) > MAX_NUMBER_DIGITS:
            raise _NumberTooLong(f"a number of {len(digits)} characters (at most {MAX_NUMBER_DIGITS} are read)")
        return kind(digits)

    return read


def _json_feed(source: Source, text: str, url: str, tz: ZoneInfo, tally: Tally, max_entries: int | None) -> list[Entry]:
    if not json_depth_ok(text):
        raise ParseError(source.name, f"not a feed: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(text, parse_int=_number(int), parse_float=_number(float))
    except _NumberTooLong as exc:
        raise ParseError(source.name, f"not a feed: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ParseError(source.name, f"not a feed: invalid JSON: {one_line(exc)}") from exc
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or not version.startswith(_JSONFEED_VERSION):
        raise ParseError(source.name, "not a feed: JSON without a jsonfeed.org version")
    items = doc.get("items")
    if not isinstance(items, list):
        raise ParseError(source.name, "not a feed: JSON Feed without an items list")
    if max_entries is not None:
        items = newest(items, max_entries, lambda item: _json_date(item, tz), tally)
    feed_authors = _json_authors(doc)
    drafts: list[Entry] = []
    guids: list[str | None] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        try:
            drafts.append(_json_entry(source, item, url, tz, tally, feed_authors))
        except Exception:  # one unreadable entry is left out (counted), never its source
            tally.dropped_entries += 1
            continue
        guids.append(_guid(item.get("id")))
    generic = [url, _str(doc.get("home_page_url")), _str(doc.get("feed_url"))]
    return _with_ids(source, drafts, guids, generic)


def _json_entry(
    source: Source, item: dict[str, Any], url: str, tz: ZoneInfo, tally: Tally, feed_authors: tuple[Author, ...]
) -> Entry:
    content_html = _str(item.get("content_html"))
    content_text = _str(item.get("content_text"))
    content = content_html or (html.escape(content_text) if content_text else "")
    summary = collapse(_str(item.get("summary")))
    if not summary:
        summary = _shorten(html_to_text(content_html) if content_html else collapse(content_text))
    raw_date = _str(item.get("date_published")) or _str(item.get("date_modified"))
    tags = item.get("tags")
    return _draft(
        source,
        title=collapse(_str(item.get("title"))),
        link=tally.link(url, _str(item.get("url")) or _str(item.get("external_url"))),
        summary=summary,
        content=content,
        authors=_json_authors(item) or feed_authors,
        published=tally.date(raw_date, tz) if raw_date else None,
        tags=(str(t) for t in tags) if isinstance(tags, list) else (),
    )


def _json_date(item: object, tz: ZoneInfo) -> dt.datetime | None:
    if not isinstance(item, dict):
        return None
    return parse_date(_str(item.get("date_published")) or _str(item.get("date_modified")), tz)


def _str(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _json_authors(obj: dict[str, Any]) -> tuple[Author, ...]:
    raw = obj.get("authors")
    if not isinstance(raw, list):
        single = obj.get("author")  # JSON Feed 1.0
        raw = [single] if isinstance(single, dict) else []
    names = (_str(a.get("name")) for a in raw if isinstance(a, dict))
    return tuple(Author(name=n) for n in names if n)


def _authors(raw: Iterable[Any]) -> tuple[Author, ...]:
    out: list[Author] = []
    for a in raw:
        name = collapse(str(a.get("name") or a.get("email") or "")) if hasattr(a, "get") else ""
        if name and Author(name) not in out:
            out.append(Author(name=name))
    return tuple(out)


def _plain(value: Any, detail: Any) -> str:
    text = str(value or "")
    kind = str(detail.get("type", "")) if detail else ""
    if "html" in kind or (not kind and "<" in text):
        return html_to_text(text)
    return collapse(text)


def _shorten(text: str, limit: int = SUMMARY_FROM_CONTENT) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return (text[:cut] if cut > 0 else text[:limit]).rstrip(" ,;:") + "…"


def _draft(
    source: Source,
    *,
    title: str,
    link: str | None,
    summary: str,
    content: str,
    authors: tuple[Author, ...],
    published: dt.datetime | None,
    tags: Iterable[str],
) -> Entry:
    title, derived = headline(title, summary, link or "Untitled")
    return Entry(
        id="",
        source=source.name,
        title=title,
        link=link,
        summary=summary,
        content=content,
        authors=authors,
        published=published,
        tags=tuple(dict.fromkeys(t.strip() for t in tags if t and t.strip())),
        title_derived=derived,
    )


def _with_ids(source: Source, drafts: list[Entry], guids: list[str | None], generic: list[str]) -> list[Entry]:
    inputs = [
        IdInput(g, e.link, "" if e.title_derived else e.title, e.summary, e.published)
        for e, g in zip(drafts, guids, strict=True)
    ]
    ids = assign_ids(source.name, inputs, generic)
    return [replace(e, id=i) for e, i in zip(drafts, ids, strict=True)]
