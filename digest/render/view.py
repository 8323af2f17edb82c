"""What the templates see: an Issue turned into display-ready values.

Dates are formatted here (English month names, the digest's time zone) so
the templates hold layout only. The same view feeds the HTML, text and
subject templates; ``limit`` keeps only the first entries when an issue is
too long for one email.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from markupsafe import Markup

from digest.models import OTHER_THEME, Author, Entry, IsoWeek, Issue
from digest.placeholders import scrub
from digest.render.sanitize import html_to_text, sanitize_html, truncate_html

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
TEASER_CHARS = 600  # how much of an entry's feed content stands in for a missing summary


@dataclass(frozen=True, slots=True)
class AlsoAt:
    """Another source's link to the same story; ``ref`` numbers it in the text part's link list."""

    source: str
    link: str
    ref: int | None

    @property
    def text(self) -> str:
        """``Source [3]``: how the text part names it."""
        return f"{self.source} [{self.ref}]" if self.ref else self.source


@dataclass(frozen=True, slots=True)
class EntryView:
    """One entry as shown: ``summary`` is plain text, ``content`` sanitised HTML (or empty).

    ``via`` names every source of a story carried by several (``"A, B"``,
    its own first), else is empty; ``also`` lists the other sources' links.
    """

    id: str
    title: str
    link: str | None
    authors: str
    date: str
    source: str
    summary: str
    content: Markup
    ref: int | None
    via: str = ""
    also: tuple[AlsoAt, ...] = ()


@dataclass(frozen=True, slots=True)
class SectionView:
    theme: str
    anchor: str
    entries: tuple[EntryView, ...]


@dataclass(frozen=True, slots=True)
class WeekView:
    key: str
    label: str
    sections: tuple[SectionView, ...]


@dataclass(frozen=True, slots=True)
class TocItem:
    theme: str
    anchor: str
    count: int


@dataclass(frozen=True, slots=True)
class IssueView:
    title: str
    key: str
    weeks_label: str
    weeks: tuple[WeekView, ...]
    toc: tuple[TocItem, ...]
    total: int
    omitted: int
    preheader: str
    links: tuple[tuple[int, str], ...]


def format_date(day: dt.date) -> str:
    """``8 January 2018`` for a date or datetime."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def date_range(a: dt.date, b: dt.date) -> str:
    """``8–14 January 2018``, ``29 January – 4 February 2018`` or with both years."""
    if (a.year, a.month) == (b.year, b.month):
        return f"{a.day}–{b.day} {MONTHS[b.month - 1]} {b.year}"
    if a.year == b.year:
        return f"{a.day} {MONTHS[a.month - 1]} – {format_date(b)}"
    return f"{format_date(a)} – {format_date(b)}"


def week_label(week: IsoWeek) -> str:
    """``Week 2 · 8–14 January 2018``."""
    return f"Week {week.week} · {date_range(week.start, week.end)}"


def weeks_label(weeks: Sequence[IsoWeek]) -> str:
    """The label of one week, or of a run of weeks: ``Weeks 1–3 · 1–21 January 2018``."""
    ordered = sorted(weeks)
    if len(ordered) == 1:
        return week_label(ordered[0])
    a, b = ordered[0], ordered[-1]
    span = date_range(a.start, b.end)
    if a.year == b.year:
        return f"Weeks {a.week}–{b.week} · {span}"
    return f"Week {a.week}, {a.year} – Week {b.week}, {b.year} · {span}"


def slug(text: str) -> str:
    """A lowercase ASCII slug: ``AI & tech competition`` → ``ai-tech-competition``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "x"


def format_authors(authors: Sequence[Author]) -> str:
    """``Ann (Lab), Bo and Cy (Uni)``: affiliation in brackets, the last joined with "and"."""
    names = [f"{a.name} ({a.affiliation})" if a.affiliation else a.name for a in authors if a.name]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _blurb(entry: Entry) -> str:
    """The summary to show under the headline, without repeating a title made from it."""
    summary = " ".join(entry.summary.split())
    if not entry.title_derived:
        return summary
    stem = entry.title.rstrip("…").rstrip(". ").strip()
    if stem and summary.startswith(stem):
        rest = summary[len(stem) :].lstrip(".?! ")
        if not rest:
            return ""
        # A title cut mid-sentence continues with an ellipsis.
        return rest if entry.title.endswith((".", "?", "!")) else "…" + rest
    return summary


def scrub_issue(issue: Issue) -> Issue:
    """``issue`` with placeholder look-alikes removed from every entry's text (see ``placeholders.scrub``)."""

    def clean(e: Entry) -> Entry:
        return dataclasses.replace(
            e,
            title=scrub(e.title),
            link=scrub(e.link) if e.link else e.link,
            summary=scrub(e.summary),
            content=scrub(e.content),
            authors=tuple(Author(scrub(a.name), scrub(a.affiliation)) for a in e.authors),
            tags=tuple(scrub(t) for t in e.tags),
            also=tuple(
                dataclasses.replace(a, source=scrub(a.source), link=scrub(a.link) if a.link else a.link) for a in e.also
            ),
        )

    sections = tuple(dataclasses.replace(s, entries=tuple(clean(e) for e in s.entries)) for s in issue.sections)
    return dataclasses.replace(issue, sections=sections)


def _web_link(link: str | None) -> bool:
    return bool(link) and urlsplit(link or "").scheme.lower() in ("http", "https")


def _entry_view(
    entry: Entry, tz: ZoneInfo, ref: int | None, allow_images: bool, also: tuple[AlsoAt, ...] = ()
) -> EntryView:
    summary = _blurb(entry)
    content = Markup("")
    if not entry.summary.strip() and entry.content.strip():
        safe = sanitize_html(entry.content, base_url=entry.link, allow_images=allow_images, alt=entry.title)
        # Marked safe only after nh3 has cleaned it.
        content = Markup(truncate_html(safe, TEASER_CHARS))
        summary = _cut(html_to_text(safe), TEASER_CHARS)
    return EntryView(
        id=entry.id,
        title=" ".join(entry.title.split()),
        link=entry.link or None,
        authors=format_authors(entry.authors),
        date=format_date(entry.when().astimezone(tz)),
        source=entry.source,
        summary=summary,
        content=content,
        ref=ref,
        via=", ".join(entry.sources) if entry.also else "",
        also=also,
    )


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:.-") + "…"


def theme_order(issue: Issue, configured: Sequence[str] = ()) -> tuple[str, ...]:
    """The issue's themes in config order, ``Other`` last.

    Each week lists its themes in config order, so merging those lists (a
    topological sort) gives that order back; ties go by ``configured``, then
    by first appearance.
    """
    rank = {theme: i for i, theme in enumerate(configured)}
    seen = {theme: i for i, theme in enumerate(issue.themes)}

    def key(theme: str) -> tuple[bool, int, int]:
        return (theme == OTHER_THEME, rank.get(theme, len(rank)), seen[theme])

    first_seen = seen
    after: dict[str, set[str]] = {theme: set() for theme in first_seen}
    before_count = dict.fromkeys(first_seen, 0)
    week_lists: dict[IsoWeek, list[str]] = {}
    for section in issue.sections:
        week_lists.setdefault(section.week, []).append(section.theme)
    for themes in week_lists.values():
        for a, b in itertools.pairwise(themes):
            if b not in after[a]:
                after[a].add(b)
                before_count[b] += 1
    ready = sorted((t for t, n in before_count.items() if n == 0), key=key)
    order: list[str] = []
    while ready:
        theme = ready.pop(0)
        order.append(theme)
        for nxt in after[theme]:
            before_count[nxt] -= 1
            if before_count[nxt] == 0:
                ready.append(nxt)
        ready.sort(key=key)
    # A cycle cannot come from build_issue; keep any leftovers rather than lose them.
    order.extend(t for t in issue.themes if t not in order)
    return tuple(order)


def build_view(
    issue: Issue,
    themes: frozenset[str],
    *,
    title: str,
    tz: ZoneInfo,
    allow_images: bool,
    limit: int | None = None,
    configured: Sequence[str] = (),
) -> IssueView:
    """The view of ``issue`` restricted to ``themes`` and to its first ``limit`` entries."""
    sections = [s for s in issue.sections if s.theme in themes]
    available = sum(len(s.entries) for s in sections)
    budget = available if limit is None else max(0, min(limit, available))
    links: list[tuple[int, str]] = []
    weeks: dict[IsoWeek, list[SectionView]] = {}
    counts: dict[str, int] = {}
    left = budget
    for section in sections:
        if left <= 0:
            break
        kept = section.entries[:left]
        left -= len(kept)
        views = []
        for entry in kept:
            ref = None
            if entry.link:
                links.append((len(links) + 1, entry.link))
                ref = len(links)
            also = []
            for other in entry.also:
                if other.link and _web_link(other.link):
                    links.append((len(links) + 1, other.link))
                    also.append(AlsoAt(other.source, other.link, len(links)))
            views.append(_entry_view(entry, tz, ref, allow_images, tuple(also)))
        anchor = f"w{section.week.year}-{section.week.week:02d}-{slug(section.theme)}"
        weeks.setdefault(section.week, []).append(SectionView(section.theme, anchor, tuple(views)))
        counts[section.theme] = counts.get(section.theme, 0) + len(views)
    toc_anchor: dict[str, str] = {}
    for week_sections in weeks.values():
        for sv in week_sections:
            toc_anchor.setdefault(sv.theme, sv.anchor)
    toc = tuple(
        TocItem(theme, toc_anchor[theme], counts[theme]) for theme in theme_order(issue, configured) if theme in counts
    )
    week_views = tuple(WeekView(str(w), week_label(w), tuple(s)) for w, s in weeks.items())
    label = weeks_label(issue.weeks or tuple(weeks))
    return IssueView(
        title=title,
        key=issue.key,
        weeks_label=label,
        weeks=week_views,
        toc=toc,
        total=budget,
        omitted=available - budget,
        preheader=_preheader(budget, toc, week_views),
        links=tuple(links),
    )


def _preheader(total: int, toc: Sequence[TocItem], weeks: Sequence[WeekView]) -> str:
    noun = "piece" if total == 1 else "pieces"
    themes = ", ".join(item.theme for item in toc)
    lead = ""
    if weeks and weeks[0].sections and weeks[0].sections[0].entries:
        lead = " — " + weeks[0].sections[0].entries[0].title
    return _cut(f"{total} new {noun} on {themes}{lead}", 140) if total else "Nothing new this time."
