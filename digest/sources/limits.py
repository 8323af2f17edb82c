"""Bounded work per source, and the notes of what was cut or dropped.

A parser never lets one bad part cost the whole source: a link that is not a
usable URL is dropped from its entry, a date outside 1970–2100 is treated as
missing (the store then places the entry by its first-seen date), an over-long
text is cut, and entries beyond ``max_entries`` are left out (the newest are
kept); an entry that cannot be read at all is left out. Each of these is
counted in a ``Tally`` that the parser fills and the gatherer copies into the
source's ``SourceResult`` for the fetch report.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar
from zoneinfo import ZoneInfo

from lxml import etree

from digest.errors import InvalidURL
from digest.models import Entry
from digest.sources import dates
from digest.urls import link

T = TypeVar("T")
_FLOOR = dt.datetime.min.replace(tzinfo=dt.UTC)
#: Element names of feed items (RSS, RDF) and entries (Atom), and of the dates inside them.
_ITEM_PARENTS = frozenset({"channel", "RDF", "feed"})
_DATES = ("pubDate", "published", "updated", "date", "issued", "modified", "created")
#: What marks a text that was cut.
CUT_NOTE = " […]"
_OPEN_TAG = re.compile(r"<[^>]*$")


@dataclass(slots=True)
class Tally:
    """Counts of what one parse dropped or cut (mutable: filled while parsing)."""

    dropped_links: int = 0
    dropped_entries: int = 0
    bad_dates: int = 0
    cut_entries: int = 0
    cut_texts: int = 0

    def link(self, base: str | None, href: str | None) -> str | None:
        """``href`` resolved against ``base`` if it is a usable http(s) URL; else None (counted)."""
        if href is None or not href.strip():
            return None
        try:
            return link(base, href)
        except InvalidURL:
            self.dropped_links += 1
            return None

    def date(self, text: str | None, tz: ZoneInfo, date_format: str | None = None) -> dt.datetime | None:
        """``dates.read_date`` of ``text``, or None when missing, unreadable or out of range (counted)."""
        return self.checked(dates.read_date(text, tz, date_format))

    def checked(self, when: dt.datetime | None) -> dt.datetime | None:
        """``when`` if it lies within 1970–2100; None otherwise (counted)."""
        if when is None:
            return None
        if not dates.in_range(when):
            self.bad_dates += 1
            return None
        return when

    def text(self, text: str, limit: int, *, markup: bool = False) -> str:
        """``text`` cut to about ``limit`` characters (counted); see ``cap_text``."""
        if len(text) <= limit:
            return text
        self.cut_texts += 1
        return cap_text(text, limit, markup=markup)


def cap_text(text: str, limit: int, *, markup: bool = False) -> str:
    """``text`` cut at the last word boundary within ``limit`` characters, marked with ``CUT_NOTE``.

    With ``markup`` (HTML content) the cut never falls inside a tag; the
    renderer's HTML parser closes what the cut left open.
    """
    if len(text) <= limit:
        return text
    head = text[:limit]
    cut = max(head.rfind(" "), head.rfind("\n"))
    if cut > limit // 2:
        head = head[:cut]
    if markup:
        head = _OPEN_TAG.sub("", head)
    return head.rstrip() + CUT_NOTE


def newest(items: Sequence[T], limit: int, when: Callable[[T], dt.datetime | None], tally: Tally) -> list[T]:
    """At most ``limit`` of ``items``, the newest by ``when`` (undated ones last), in their order.

    The number left out is added to ``tally.cut_entries``.
    """
    if len(items) <= limit:
        return list(items)
    dates = [when(item) for item in items]
    # Stable: among equal (or missing) dates the earlier in the document wins, as feeds list newest first.
    ranked = sorted(range(len(items)), key=lambda i: dates[i] or _FLOOR, reverse=True)
    keep = set(ranked[: max(limit, 0)])
    tally.cut_entries += len(items) - len(keep)
    return [item for i, item in enumerate(items) if i in keep]


def keep_newest(entries: Sequence[Entry], limit: int, tally: Tally) -> list[Entry]:
    """At most ``limit`` entries, the newest by published date (see ``newest``)."""
    return newest(entries, limit, lambda e: e.published, tally)


def prune_feed_xml(data: bytes, limit: int, tz: ZoneInfo, tally: Tally) -> bytes:
    """A feed document with only its ``limit`` newest items, so a huge feed costs feedparser little.

    feedparser takes about a millisecond an item; 100,000 items would outlast
    any deadline. lxml reads the dates of all items in a fraction of that,
    and the items not kept are removed before feedparser sees the document.
    A document lxml cannot read strictly is returned as it is (feedparser is
    more forgiving; the deadline still bounds it). Entity declarations were
    refused before this point, and none are resolved here.
    """
    if data.count(b"<item") + data.count(b"<entry") <= limit:
        return data
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return data
    items = [
        el
        for el in root.iter("{*}item", "{*}entry")
        if (up := el.getparent()) is not None and etree.QName(up).localname in _ITEM_PARENTS
    ]
    kept = set(newest(items, limit, lambda el: _item_date(el, tz), tally))
    for el in items:
        if el not in kept:
            el.getparent().remove(el)
    return bytes(etree.tostring(root, encoding="utf-8", xml_declaration=True))


def _item_date(el: etree._Element, tz: ZoneInfo) -> dt.datetime | None:
    for child in el:
        if isinstance(child.tag, str) and etree.QName(child).localname in _DATES and child.text:
            found = dates.read_date(child.text, tz)
            if found is not None and dates.in_range(found):
                return found
    return None


def capped(entry: Entry, limit: int, tally: Tally) -> Entry:
    """``entry`` with its summary and content each cut to ``limit`` characters (see ``cap_text``)."""
    if len(entry.summary) <= limit and len(entry.content) <= limit:
        return entry
    return replace(
        entry, summary=tally.text(entry.summary, limit), content=tally.text(entry.content, limit, markup=True)
    )
