"""HTML listings: entries picked out of a web page with CSS selectors.

``Selectors.item`` matches one element per entry; the other selectors are
evaluated inside it and are optional:

- ``title``: text of the first match. Without a selector, the item's first
  heading (``h1``–``h6``). Without a title, one is derived from the summary.
- ``link``: ``href`` of the first match, or of its first ``a`` inside, or of
  the ``a`` around it. Without a selector, the title's link, else the
  item's first ``a[href]``. Resolved against the page URL, honouring
  ``<base href>``; only http(s) links are kept (a bad one is dropped and
  counted; the entry stays).
- ``date``: the ``datetime`` attribute of the first match, else its text,
  read with the source's ``date_format`` and then the fallback parsers of
  ``dates.parse_date``. Without a selector, the item's first ``time``.
- ``summary``: text of all matches, joined. Without a selector, the
  item's first paragraph (``p``).
- ``author``: one byline per match ("By Name, Affiliation" is split).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

import lxml.html
from lxml import etree
from lxml.cssselect import CSSSelector, SelectorError

from digest.errors import InvalidURL, ParseError
from digest.models import Entry, Source
from digest.sources.ids import IdInput, assign_ids
from digest.sources.limits import Tally
from digest.sources.listing_text import parse_author
from digest.sources.text import collapse, headline
from digest.urls import join

_HEADINGS = CSSSelector("h1, h2, h3, h4, h5, h6")
_ANCHORS = CSSSelector("a[href]")
_TIMES = CSSSelector("time")
_PARAGRAPHS = CSSSelector("p")


@dataclass(frozen=True, slots=True)
class Listing:
    """Entries read from a listing, and how many items the ``item`` selector matched."""

    entries: tuple[Entry, ...]
    item_count: int


def _compile(source: Source, name: str, css: str) -> CSSSelector:
    try:
        return CSSSelector(css)
    except SelectorError as exc:
        raise ParseError(source.name, f"invalid CSS selector {name} = {css!r}: {exc}") from exc


def _text(el: lxml.html.HtmlElement) -> str:
    return collapse(str(el.text_content()))


def _href(el: lxml.html.HtmlElement) -> str | None:
    if el.get("href"):
        return str(el.get("href"))
    inner = _ANCHORS(el)
    if inner:
        return str(inner[0].get("href"))
    for up in el.iterancestors("a"):
        if up.get("href"):
            return str(up.get("href"))
    return None


def _page_base(root: lxml.html.HtmlElement, page_url: str) -> str:
    base = root.find(".//base[@href]")
    if base is None:
        return page_url
    try:
        return join(page_url, str(base.get("href")))
    except InvalidURL:
        return page_url  # a broken <base> is ignored, as browsers do


def parse_html_listing(source: Source, html: str, page_url: str, tz: ZoneInfo, tally: Tally | None = None) -> Listing:
    """Read the entries of an HTML listing (see the module docstring).

    ``html`` is the decoded page, ``page_url`` where it was fetched from
    (after redirects). Raises ``ParseError`` for an invalid selector.
    What was dropped on the way is counted in ``tally``.
    """
    tally = tally if tally is not None else Tally()
    sel = source.selectors
    if sel is None:
        raise ParseError(source.name, "an html listing needs selectors (at least item)")
    compiled = {
        name: _compile(source, name, css)
        for name in ("item", "title", "link", "date", "summary", "author")
        if (css := getattr(sel, name)) is not None
    }
    # lxml refuses str input that carries an XML encoding declaration (XHTML pages).
    if html.lstrip().startswith("<?xml"):
        html = html.lstrip().split("?>", 1)[-1]
    if not html.strip():
        return Listing((), 0)
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError) as exc:
        raise ParseError(source.name, f"not an HTML page: {exc}") from exc
    base = _page_base(root, page_url)
    items = compiled["item"](root)
    drafts: list[Entry] = []
    for item in items:
        try:
            entry = _entry(source, item, compiled, base, tz, tally)
        except Exception:  # one unreadable entry is left out (counted), never its source
            tally.dropped_entries += 1
            continue
        if entry is not None:
            drafts.append(entry)
    ids = assign_ids(
        source.name,
        [IdInput(None, e.link, "" if e.title_derived else e.title, e.summary, e.published) for e in drafts],
        [page_url, base],
    )
    return Listing(tuple(replace(e, id=i) for e, i in zip(drafts, ids, strict=True)), len(items))


def _entry(
    source: Source,
    item: lxml.html.HtmlElement,
    sel: dict[str, CSSSelector],
    base: str,
    tz: ZoneInfo,
    tally: Tally,
) -> Entry | None:
    def first(name: str, default: CSSSelector | None = None) -> lxml.html.HtmlElement | None:
        selector = sel.get(name, default)
        found = selector(item) if selector is not None else []
        return found[0] if found else None

    title_el = first("title", _HEADINGS)
    title = _text(title_el) if title_el is not None else ""
    link_el = first("link")
    href = _href(link_el) if link_el is not None else None
    if href is None and "link" not in sel:
        href = (_href(title_el) if title_el is not None else None) or _href_in(item)
    link = tally.link(base, href)
    date_el = first("date", _TIMES)
    date_text = (date_el.get("datetime") or _text(date_el)) if date_el is not None else None
    published = tally.date(date_text, tz, source.date_format)
    if "summary" in sel:
        summary = collapse(" ".join(_text(el) for el in sel["summary"](item)))
    else:
        para = first("summary", _PARAGRAPHS)
        summary = _text(para) if para is not None else ""
    authors = tuple(parse_author(t) for el in sel["author"](item) if (t := _text(el))) if "author" in sel else ()
    if not (title or summary or link):
        return None
    title, derived = headline(title, summary, link or "")
    return Entry(
        id="",
        source=source.name,
        title=title,
        link=link,
        summary=summary,
        authors=authors,
        published=published,
        title_derived=derived,
    )


def _href_in(item: lxml.html.HtmlElement) -> str | None:
    if item.get("href"):
        return str(item.get("href"))
    inner = _ANCHORS(item)
    return str(inner[0].get("href")) if inner else None
