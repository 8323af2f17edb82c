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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from digest.errors import InvalidURL
from digest.models import Entry
from digest.sources import dates
from digest.urls import link

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


def keep_newest(entries: Sequence[Entry], limit: int, tally: Tally) -> list[Entry]:
    """At most ``limit`` entries, the newest by published date (undated ones after), in their order.

    The number left out is added to ``tally.cut_entries``.
    """
    if len(entries) <= limit:
        return list(entries)
    floor = dt.datetime.min.replace(tzinfo=dt.UTC)
    # Stable: among equal (or missing) dates the earlier in the document wins, as feeds list newest first.
    ranked = sorted(range(len(entries)), key=lambda i: entries[i].published or floor, reverse=True)
    keep = set(ranked[:limit]) if limit > 0 else set()
    tally.cut_entries += len(entries) - len(keep)
    return [e for i, e in enumerate(entries) if i in keep]


def capped(entry: Entry, limit: int, tally: Tally) -> Entry:
    """``entry`` with its summary and content each cut to ``limit`` characters (see ``cap_text``)."""
    if len(entry.summary) <= limit and len(entry.content) <= limit:
        return entry
    return replace(
        entry, summary=tally.text(entry.summary, limit), content=tally.text(entry.content, limit, markup=True)
    )
