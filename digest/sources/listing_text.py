"""Text listings: entries copied from a web page as plain lines.

A text listing is a run of records, one a line group, in the order the
source's ``record`` gives (default ``("authors", "date", "summary")``)::

    Lu Chen, Consultant, United Nations        ← authors of entry 2
    Jan 08, 2018                               ← date: anchors entry 2
    The key to which country currently …       ← summary of entry 2
    Lu Chuanying, Fellow and …, SIIS           ← authors of entry 3
    Dec 29, 2017                               ← …

Date lines (see ``dates.parse_date_line``) anchor the entries. The lines
between two date lines hold the parts after the first date (``record``
after ``date``) and the parts before the second (``record`` before
``date``). The parts before a date are taken from the end of that stretch,
the parts after a date from its start; the last part after the date takes
whatever is left. Lines before the first date that are not the first
entry's parts are leftovers of an entry cut off by the copy, and dropped.

How a part takes lines:

- ``title``: one line; ``link``: one line, only if it is an http(s) URL;
- ``authors``: a run of author lines (``is_author_line``);
- ``summary``: a run of lines that are neither author lines nor URLs, or
  everything left when it is the last part to fill.

The author-line rule (a heuristic; prose and bylines look different):
an author line has at most 200 characters and 30 words, does not end like a
sentence (``.``, ``!``, ``?``, ``…``, unless the last word is an
abbreviation such as "Inc."), holds no second sentence, and starts with a
name: 2–5 capitalised words (particles such as "van" or "de" allowed), no
digits, at most 50 characters, followed by a comma, " at ", a dash or a bar
and an affiliation; a bare name of 2–4 words also counts. Anything else is
summary. ``parse_author`` splits such a line into name and affiliation.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from digest.models import Author, Entry, Source
from digest.sources.dates import parse_date_line
from digest.sources.ids import IdInput, assign_ids
from digest.sources.limits import Tally
from digest.sources.text import clean_line, collapse, headline, words
from digest.urls import is_http

_PARTICLES = words("van von der den de del della da di du la le bin binti al el ibn dos das ter ten")
_NOT_NAMES = words("read more continue reading share comments click here next previous back top home")
_ABBREV_END = words("inc. ltd. co. corp. jr. sr. ph.d. llc. plc. s.a. ag. gmbh. esq. univ. dept.")
_NAME_WORD = re.compile(r"^[A-Z][\w'’.\-]*$")
_SEPARATORS = re.compile(r",|\s+at\s+|\s+[-–—|]\s+")
_BY = re.compile(r"^(?:by|written by|author:?)\s+", re.I)
_SECOND_SENTENCE = re.compile(r"[a-z)][.!?]\s+[A-Z]")
_SENTENCE_ENDS = tuple(".!?…:;\"”’')]")


def _is_name(text: str) -> bool:
    names = text.split()
    # One capitalised word ("China, the US and …") is too often prose; bylines give two or more.
    if not 2 <= len(names) <= 5 or len(text) > 50 or any(c.isdigit() for c in text):
        return False
    if names[0].lower() in _PARTICLES or not _NAME_WORD.match(names[0]):
        return False
    return all(_NAME_WORD.match(w) or w.lower() in _PARTICLES for w in names) and not any(
        w.lower() in _NOT_NAMES for w in names
    )


def is_author_line(line: str) -> bool:
    """Whether ``line`` is a byline like "Name, Role, Organisation" (rule in the module docstring)."""
    text = _BY.sub("", collapse(line))
    if not text or len(text) > 200 or len(text.split()) > 30:
        return False
    if text[-1] in ".!?…" and text.split()[-1].lower() not in _ABBREV_END:
        return False
    if _SECOND_SENTENCE.search(text):
        return False
    m = _SEPARATORS.search(text)
    if m is None:
        return len(text.split()) <= 4 and _is_name(text)
    return _is_name(text[: m.start()]) and bool(text[m.end() :].strip())


def parse_author(line: str) -> Author:
    """Split a byline: "Name, Role, Org" → ``Author("Name", "Role, Org")``.

    The name ends at the first comma, " at ", or spaced dash or bar; the rest
    is the affiliation. A lone name has no affiliation.
    """
    text = _BY.sub("", collapse(line))
    m = _SEPARATORS.search(text)
    if m is None:
        return Author(name=text)
    return Author(name=text[: m.start()].strip(), affiliation=text[m.end() :].strip(" ,"))


@dataclass(slots=True)
class TextRecord:
    """The parts of one text-listing entry, as read (not yet an ``Entry``)."""

    published: dt.datetime
    title: str = ""
    link: str | None = None
    authors: list[Author] = field(default_factory=list)
    summary_lines: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return " ".join(line for line in (clean_line(x) for x in self.summary_lines) if line)


def _run(lines: list[str], test: Callable[[str], bool], *, from_end: bool) -> int:
    """How many lines at one end of ``lines`` pass ``test``."""
    n = 0
    seq = reversed(lines) if from_end else iter(lines)
    for line in seq:
        if not test(line):
            break
        n += 1
    return n


def _is_prose(line: str) -> bool:
    return not is_author_line(line) and not is_http(line.strip())


def _is_bare_name(line: str) -> bool:
    """An author line that is only a name ("Graham Allison"), no affiliation."""
    return _SEPARATORS.search(_BY.sub("", collapse(line))) is None


def _sentence_goes_on(line: str) -> bool:
    """Whether prose ``line`` stops mid-sentence, so that the next line continues it (a wrapped line)."""
    return _is_prose(line) and not line.rstrip().endswith(_SENTENCE_ENDS)


def _authors_from_end(lines: list[str], *, summary_before: bool) -> int:
    """How many author lines end ``lines``.

    With ``summary_before`` (a summary precedes these lines in the record
    shape), a bare name that continues a sentence left open on the line
    before it is the wrapped end of that summary, not a byline.
    """
    n = 0
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i]
        if not is_author_line(line):
            break
        if summary_before and i > 0 and _is_bare_name(line) and _sentence_goes_on(lines[i - 1]):
            break
        n += 1
    return n


def _take(
    part: str, lines: list[str], *, from_end: bool, last: bool, reserve: int = 0, summary_before: bool = False
) -> tuple[list[str], list[str]]:
    """Split ``lines`` into (taken by ``part``, rest), taking from the start or the end.

    ``last`` takes everything but ``reserve`` lines at the far end (the URL
    lines of ``link`` parts still to come). A ``link`` takes one line, and only
    one that is an http(s) URL.
    """
    if not lines:
        return [], lines
    if part == "link":
        n = 1 if is_http(lines[-1] if from_end else lines[0]) else 0
    elif last:
        n = len(lines) - reserve
    elif part == "title":
        n = 1
    elif part == "authors":
        if from_end:
            n = _authors_from_end(lines, summary_before=summary_before)
        else:
            n = _run(lines, is_author_line, from_end=False)
    else:
        n = _run(lines, _is_prose, from_end=from_end)
    if from_end:
        return lines[len(lines) - n :], lines[: len(lines) - n]
    return lines[:n], lines[n:]


def _fill(record: TextRecord, part: str, lines: list[str]) -> None:
    if part == "title":
        record.title = clean_line(" ".join(lines))
    elif part == "link":
        record.link = lines[0].strip() if lines and is_http(lines[0]) else None
    elif part == "authors":
        record.authors.extend(parse_author(line) for line in lines)
    elif part == "summary":
        record.summary_lines.extend(lines)


def _blank_separated(blocks: list[int], anchors: list[int]) -> bool:
    """Whether blank lines separate records: no paragraph holds two dates, and most dates share
    their paragraph with the lines before them (so the parts before a date are in its paragraph)."""
    dated = [blocks[i] for i in anchors]
    if len(set(blocks)) < 2 or len(set(dated)) != len(dated):
        return False
    joined = sum(1 for i in anchors if i > 0 and blocks[i - 1] == blocks[i])
    return joined * 2 >= len(anchors)


def _trailing_urls(lines: list[str], most: int) -> int:
    return min(most, _run(lines, lambda line: is_http(line), from_end=True))


def read_records(text: str, tz: ZoneInfo, record: Sequence[str], date_format: str | None = None) -> list[TextRecord]:
    """The entries of a text listing, in file order (see the module docstring)."""
    lines: list[str] = []
    blocks: list[int] = []  # the paragraph (run of lines between blank lines) of each line
    block = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            block += 1
            continue
        lines.append(line)
        blocks.append(block)
    anchors = [(i, d) for i, line in enumerate(lines) if (d := parse_date_line(line, tz, date_format))]
    if not anchors:
        return []
    separated = _blank_separated(blocks, [i for i, _ in anchors])
    at = record.index("date")
    before, after = list(record[:at]), list(record[at + 1 :])
    absorbing = [p for p in after if p != "link"]
    summary_before = "summary" in after
    records = [TextRecord(published=d) for _, d in anchors]
    bounds = [-1, *(i for i, _ in anchors), len(lines)]
    for k in range(len(anchors) + 1):
        start, end = bounds[k] + 1, bounds[k + 1]
        stretch = lines[start:end]
        # Parts before the next date come from the end of the stretch…
        if k < len(anchors):
            # …and, where blank lines separate records, only from the date's own paragraph.
            own = stretch
            if separated and after:
                mine = end
                while mine > start and blocks[mine - 1] == blocks[end]:
                    mine -= 1
                own = lines[mine:end]
            rest = stretch[: len(stretch) - len(own)]
            for n, part in enumerate(reversed(before)):
                # The first entry's leftovers are dropped, so nothing is "last" there;
                # elsewhere the earliest before-part takes all when no after-part is waiting.
                last = k > 0 and not after and n == len(before) - 1
                taken, own = _take(part, own, from_end=True, last=last, summary_before=summary_before)
                _fill(records[k], part, taken)
            stretch = rest + own
        # …and the parts after the previous date from its start.
        if k > 0:
            for n, part in enumerate(after):
                last = bool(absorbing) and part == absorbing[-1]
                reserve = _trailing_urls(stretch, len(after) - n - 1) if last else 0
                taken, stretch = _take(part, stretch, from_end=False, last=last, reserve=reserve)
                _fill(records[k - 1], part, taken)
    return records


def parse_text_listing(
    source: Source, text: str, tz: ZoneInfo, base_url: str | None = None, tally: Tally | None = None
) -> list[Entry]:
    """The entries of a text listing; titles are derived from summaries when missing.

    ``base_url`` resolves relative links (``link`` lines must be absolute
    http(s) URLs to be recognised, so it rarely matters). A date outside
    1970–2100 still anchors its entry but is not its published date (counted in ``tally``).
    """
    tally = tally if tally is not None else Tally()
    records = read_records(text, tz, source.record, source.date_format)
    drafts: list[Entry] = []
    for rec in records:
        summary = rec.summary
        title, derived = headline(rec.title, summary, rec.published.strftime("%d %B %Y").lstrip("0"))
        drafts.append(
            Entry(
                id="",
                source=source.name,
                title=title,
                link=rec.link,
                summary=summary,
                authors=tuple(rec.authors),
                published=tally.checked(rec.published),
                title_derived=derived,
            )
        )
    ids = assign_ids(
        source.name,
        [IdInput(None, e.link, "" if e.title_derived else e.title, e.summary, e.published) for e in drafts],
        [base_url or ""],
    )
    return [replace(e, id=i) for e, i in zip(drafts, ids, strict=True)]
