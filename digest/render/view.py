"""What the templates see: an Issue turned into display-ready values.

Dates are formatted here (English month names, the digest's time zone) so
the templates hold layout only. The same view feeds the HTML, text and
subject templates; ``limit`` keeps a fair share of each section's first
entries when an issue is too long for one email (``[issue] max_entries``,
or Gmail's clipping). Entries an issue carries from earlier weeks are
marked ("from last week"); ``updates`` are the "Updated" ones.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from markupsafe import Markup

from digest import urls
from digest.models import OTHER_THEME, Author, Editorial, Entry, IsoWeek, Issue
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
    #: "from last week" / "from 2018-W02" for an entry an issue carries from an earlier week, else "".
    carried: str = ""
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
    #: Entries sent in an earlier issue that changed materially since ("Updated").
    updates: tuple[EntryView, ...] = ()
    #: The edition's values ("" when not set): its subject, the lede line it replaces, its note.
    subject: str = ""
    headline: str = ""
    note_html: Markup = field(default_factory=Markup)
    note_text: str = ""


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
    """The summary to show under the headline, without repeating a title made from it.

    A title that is the summary's whole first sentence is not repeated: the
    summary goes on after it. A title that is only part of a sentence (a
    clause, or cut with "…") leaves the summary whole, so no sentence starts
    in the headline and ends in the summary.
    """
    summary = " ".join(entry.summary.split())
    if not entry.title_derived or entry.title.endswith("…"):
        return summary
    stem = entry.title.rstrip(". ").strip()
    if not stem or not summary.startswith(stem):
        return summary
    rest = summary[len(stem) :]
    # The title ended where the sentence ends: at its own "?"/"!", or the summary's next mark ends it.
    ended = stem.endswith(("?", "!", "…")) or re.match(r"[.?!…]+(?:\s|$)", rest) is not None
    if not ended or (rest and not re.match(r"[.?!…]*(?:\s|$)", rest)):
        return summary
    return rest.lstrip(".?!… ")


def carried_label(own: IsoWeek, issue_weeks: Sequence[IsoWeek]) -> str:
    """``from last week`` for the week before the issue's first, else ``from 2018-W02``."""
    return "from last week" if own == min(issue_weeks).previous() else f"from {own}"


def _entry_view(
    entry: Entry,
    tz: ZoneInfo,
    ref: int | None,
    allow_images: bool,
    carried: str = "",
    also: tuple[AlsoAt, ...] = (),
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
        carried=carried,
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
    """The view of ``issue`` restricted to ``themes`` and to at most ``limit`` entries.

    The ``limit`` is shared fairly: every section keeps an equal share (what
    a short section leaves goes to the longer ones), so a long theme cannot
    crowd the others out. Only the entries shown are formatted, so a huge
    issue costs what its first ``limit`` entries cost.
    """
    sections = [s for s in issue.sections if s.theme in themes]
    available = sum(len(s.entries) for s in sections)
    budget = available if limit is None else max(0, min(limit, available))
    shares = allot([len(s.entries) for s in sections], budget)
    carried = {eid: carried_label(week, issue.weeks) for eid, week in issue.carried} if issue.carried else {}
    links: list[tuple[int, str]] = []
    weeks: dict[IsoWeek, list[SectionView]] = {}
    counts: dict[str, int] = {}

    def view_of(entry: Entry) -> EntryView:
        ref = None
        if entry.link:
            links.append((len(links) + 1, entry.link))
            ref = len(links)
        also = []
        for other in entry.also:
            # Only web links are linked: a sighting's link is as hostile as any feed text.
            if other.link and urls.is_http(other.link):
                links.append((len(links) + 1, other.link))
                also.append(AlsoAt(other.source, other.link, len(links)))
        return _entry_view(entry, tz, ref, allow_images, carried.get(entry.id, ""), tuple(also))

    for section, share in zip(sections, shares, strict=True):
        if share <= 0:
            continue
        views = [view_of(entry) for entry in section.entries[:share]]
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
    # Updates of the chosen themes, within what is left of the limit.
    room = None if limit is None else max(0, limit - budget)
    changed = [e for s in issue.updates if s.theme in themes for e in s.entries][:room]
    updates = tuple(view_of(e) for e in changed)
    ed = issue.editorial or Editorial(sha256="")
    return IssueView(
        title=title,
        key=issue.key,
        weeks_label=label,
        weeks=week_views,
        toc=toc,
        total=budget,
        omitted=available - budget,
        preheader=ed.preheader or _preheader(budget, toc, week_views),
        links=tuple(links),
        updates=updates,
        subject=ed.subject,
        headline=ed.headline,
        # Sanitised when the edition was applied (editions.note_html); sanitised again, as cheap insurance
        # against a hand-edited frozen issue.
        note_html=Markup(sanitize_html(ed.note_html)) if ed.note_html else Markup(""),
        note_text=ed.note_text,
    )


def allot(sizes: Sequence[int], budget: int) -> list[int]:
    """How many of each size to keep so that they sum to ``min(budget, sum(sizes))``, fairly.

    Water-filling: each gets an equal share, capped at its size; what the
    small ones leave is shared among the rest; a remainder goes to the
    first ones. Keeping more never keeps fewer of any one (the clip search
    relies on that).
    """
    shares = [0] * len(sizes)
    left = min(budget, sum(sizes))
    open_ = [i for i, n in enumerate(sizes) if n > 0]
    while left > 0 and open_:
        each, extra = divmod(left, len(open_))
        still = []
        for rank, i in enumerate(open_):
            give = min(sizes[i] - shares[i], each + (1 if rank < extra else 0))
            shares[i] += give
            left -= give
            if shares[i] < sizes[i]:
                still.append(i)
        open_ = still
    return shares


def _preheader(total: int, toc: Sequence[TocItem], weeks: Sequence[WeekView]) -> str:
    noun = "piece" if total == 1 else "pieces"
    themes = ", ".join(item.theme for item in toc)
    lead = ""
    if weeks and weeks[0].sections and weeks[0].sections[0].entries:
        lead = " — " + weeks[0].sections[0].entries[0].title
    return _cut(f"{total} new {noun} on {themes}{lead}", 140) if total else "Nothing new this time."
