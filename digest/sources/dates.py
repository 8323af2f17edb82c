"""Dates as sources write them → timezone-aware datetimes.

Sources write dates every which way: RFC 822 in RSS, ISO 8601 in Atom and
JSON Feed, "Jan 15, 2018" on web pages. Every parser here returns an aware
datetime; a date written without an offset is taken to be in the digest's
configured time zone, and a bare date means midnight there.

Two strengths of matching:

- ``parse_date_line`` says whether a whole line *is* a date. Text listings
  use it to find the lines that anchor their entries, so it is strict: only
  common written forms (or the source's ``date_format``), nothing fuzzy.
- ``parse_date`` reads a date out of a field that is known to hold one
  (a feed's ``pubDate``, an HTML listing's date element): ``date_format``,
  then ISO 8601, then RFC 822, then the common forms anywhere in the text,
  then ``dateutil``. A date outside 1970–2100 (after conversion to UTC; a
  zone offset can push year 9999 past the end of ``datetime``) is no date
  at all: ``parse_date`` gives ``None``; ``read_date`` gives it unchecked,
  for callers that count such dates (``in_range`` tells).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from zoneinfo import ZoneInfo

from dateutil import parser as dateutil_parser

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH = (
    r"(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_WEEKDAY = r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"

# The written forms a date line may take, each matching a whole date.
_FORMS = [
    re.compile(_WEEKDAY + _MONTH + r"\s+" + _DAY + r",?\s+" + _YEAR, re.I),  # Jan 15, 2018
    re.compile(_WEEKDAY + _DAY + r"\s+" + _MONTH + r",?\s+" + _YEAR, re.I),  # 15 January 2018
    re.compile(_YEAR + r"-(?P<month>\d{1,2})-" + _DAY),  # 2018-01-15
    re.compile(_YEAR + r"/(?P<month>\d{1,2})/" + _DAY),  # 2018/01/15
]
# Decoration a date line may carry around the date itself.
_LINE_DECORATION = re.compile(r"^[\s\-–—|•·*:(\[]*(?:(?:posted|published|updated)(?:\s+on)?:?\s+)?", re.I)
_LINE_TRAILER = re.compile(r"[\s\-–—|•·*:)\]]*$")
_YEAR_RE = re.compile(r"\b\d{4}\b")


#: Dates outside [EARLIEST, LATEST) are treated as missing: typos, placeholders, attacks.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2101, 1, 1, tzinfo=dt.UTC)


def in_range(when: dt.datetime) -> bool:
    """Whether ``when`` (aware) lies within 1970–2100 once converted to UTC."""
    try:
        utc = when.astimezone(dt.UTC)
    except (OverflowError, ValueError):  # year 9999 at -23:59 is past datetime.max in UTC
        return False
    return EARLIEST <= utc < LATEST


def localize(when: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """``when`` if it is aware, else the same wall-clock time in ``tz``."""
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


def _from_match(m: re.Match[str], tz: ZoneInfo) -> dt.datetime | None:
    month_raw = m.group("month")
    month = int(month_raw) if month_raw.isdigit() else _MONTHS[month_raw[:3].lower()]
    try:
        day = dt.date(int(m.group("year")), month, int(m.group("day")))
    except ValueError:
        return None
    return dt.datetime.combine(day, dt.time(), tzinfo=tz)


def _strptime(text: str, date_format: str, tz: ZoneInfo) -> dt.datetime | None:
    try:
        return localize(dt.datetime.strptime(text, date_format), tz)
    except ValueError:
        return None


def parse_date_line(line: str, tz: ZoneInfo, date_format: str | None = None) -> dt.datetime | None:
    """The date if the whole ``line`` is one date, else ``None``.

    With ``date_format`` the stripped line must match it exactly
    (``strptime``); otherwise one of the common forms ("Jan 15, 2018",
    "Monday, 15 January 2018", "2018-01-15", "2018/01/15"), optionally
    decorated ("Posted on …", "— Jan 15, 2018 —").
    """
    text = line.strip()
    if not text or len(text) > 60:
        return None
    if date_format:
        return _strptime(text, date_format, tz)
    core = _LINE_TRAILER.sub("", _LINE_DECORATION.sub("", text, count=1), count=1)
    for form in _FORMS:
        m = form.fullmatch(core)
        if m:
            return _from_match(m, tz)
    return None


def parse_date(text: str | None, tz: ZoneInfo, date_format: str | None = None) -> dt.datetime | None:
    """Read one date out of ``text``; ``None`` when nothing sensible is found or it is out of range.

    Naive results are placed in ``tz``. Text without a four-digit year is
    refused rather than completed from today's date.
    """
    found = read_date(text, tz, date_format)
    return found if found is not None and in_range(found) else None


def read_date(text: str | None, tz: ZoneInfo, date_format: str | None = None) -> dt.datetime | None:
    """``parse_date`` without the range check (see ``in_range``)."""
    if not text:
        return None
    text = " ".join(text.split())
    if not text:
        return None
    if date_format:
        found = _strptime(text, date_format, tz)
        if found is not None:
            return found
    iso = text.replace("Z", "+00:00") if text.endswith("Z") else text
    try:
        return localize(dt.datetime.fromisoformat(iso), tz)
    except ValueError:
        pass
    try:
        rfc = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        rfc = None
    if rfc is not None:
        # A missing zone (and RFC 5322's "-0000", "zone unknown") come back naive.
        return localize(rfc, tz)
    if not _YEAR_RE.search(text):
        return None
    strict = _dateutil(text, fuzzy=False)
    if strict is not None:
        return localize(strict, tz)
    for form in _FORMS:
        m = form.search(text)
        if m:
            found = _from_match(m, tz)
            if found is not None:
                return found
    fuzzy = _dateutil(text, fuzzy=True)
    return localize(fuzzy, tz) if fuzzy is not None else None


def _dateutil(text: str, *, fuzzy: bool) -> dt.datetime | None:
    try:
        return dateutil_parser.parse(text, default=dt.datetime(2000, 1, 1), fuzzy=fuzzy)
    except (ValueError, OverflowError):  # dateutil's ParserError is a ValueError
        return None
