"""Pure grouping: which theme an entry belongs to, which week, and the Issue.

Nothing here does I/O or reads the clock. Theme rules are tried in config
order and the first match wins; an entry no rule claims goes to its source's
default theme, else to ``models.OTHER_THEME``. Weeks are ISO weeks (Monday to
Sunday) in the digest's time zone, so an entry published late on a Sunday
evening local time belongs to that week even when it is already Monday in UTC.
Cross-source duplicates are folded into one entry by ``dedup`` before the
entries are placed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from digest.config import DedupSettings
from digest.dedup import merge_duplicates
from digest.models import OTHER_THEME, Entry, IsoWeek, Issue, Section, Theme


def _word_pattern(words: Iterable[str]) -> str | None:
    """One alternation of whole-word sequences; whitespace inside a sequence is flexible."""
    alternatives = []
    for raw in words:
        parts = raw.casefold().split()
        if parts:
            alternatives.append(r"\s+".join(re.escape(p) for p in parts))
    if not alternatives:
        return None
    # Longest first so that "cyber espionage" wins over "cyber" inside one alternation.
    alternatives.sort(key=lambda a: (-len(a), a))
    # Lookarounds on \w rather than \b: \b misbehaves when a keyword starts or
    # ends with punctuation ("U.S.", "C++").
    return r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)"


class _Rule:
    """One theme's rules, compiled."""

    __slots__ = ("categories", "name", "pattern", "sources")

    def __init__(self, theme: Theme) -> None:
        self.name = theme.name
        source = _word_pattern((*theme.keywords, *theme.phrases))
        self.pattern = re.compile(source) if source else None
        self.categories = frozenset(c.casefold().strip() for c in theme.categories)
        self.sources = frozenset(s.casefold().strip() for s in theme.sources)

    def matches(self, entry: Entry, text: str, tags: frozenset[str]) -> bool:
        if self.pattern is not None and self.pattern.search(text):
            return True
        if self.categories & tags:
            return True
        return entry.source.casefold() in self.sources


class ThemeMatcher:
    """Theme rules compiled once; ``match`` gives the first theme that claims an entry.

    Keywords and phrases match whole words, case-insensitively (casefolded, so
    "Straße" matches "STRASSE"), in the entry's title, summary and tags.
    """

    def __init__(self, themes: Sequence[Theme]) -> None:
        self.themes = tuple(themes)
        self._rules = tuple(_Rule(t) for t in self.themes)

    def match(self, entry: Entry) -> str | None:
        """The first theme whose rules match ``entry``, or ``None``."""
        if not self._rules:
            return None
        text = "\n".join((entry.title, entry.summary, " ".join(entry.tags))).casefold()
        tags = frozenset(t.casefold().strip() for t in entry.tags)
        for rule in self._rules:
            if rule.matches(entry, text, tags):
                return rule.name
        return None


@functools.lru_cache(maxsize=32)
def _matcher(themes: tuple[Theme, ...]) -> ThemeMatcher:
    return ThemeMatcher(themes)


def assign_theme(entry: Entry, themes: Sequence[Theme], default_theme: str | None) -> str:
    """The theme of ``entry``: first matching rule, else ``default_theme``, else ``Other``."""
    return _matcher(tuple(themes)).match(entry) or default_theme or OTHER_THEME


def theme_of(entry: Entry, themes: Sequence[Theme], source_themes: Mapping[str, str]) -> str:
    """The section an entry lands in, as ``build_issue`` would place it.

    With themes configured this is ``assign_theme`` with the source's default
    theme. With none, entries group by their source's theme when it has one,
    else their first feed category, else their source name.
    """
    default = source_themes.get(entry.source)
    if themes:
        return assign_theme(entry, themes, default)
    if default:
        return default
    for tag in entry.tags:
        if tag.strip():
            return tag.strip()
    return entry.source


def week_of(entry: Entry, tz: ZoneInfo) -> IsoWeek:
    """The ISO week of ``entry`` in the digest's time zone."""
    return IsoWeek.of(entry.when(), tz)


def last_complete_week(now: dt.datetime, tz: ZoneInfo) -> IsoWeek:
    """The week before the one containing ``now`` (an aware datetime), in ``tz``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return IsoWeek.of(now, tz).previous()


def weeks_between(first: IsoWeek, last: IsoWeek) -> tuple[IsoWeek, ...]:
    """Every week from ``first`` to ``last``, both included, oldest first."""
    if last < first:
        raise ValueError(f"{last} is before {first}")
    weeks = [first]
    while weeks[-1] < last:
        weeks.append(weeks[-1].next())
    return tuple(weeks)


def issue_key(weeks: Iterable[IsoWeek]) -> str:
    """``"2018-W02"`` for one week, ``"2018-W01..2018-W03"`` for several."""
    ordered = sorted(set(weeks))
    if not ordered:
        raise ValueError("an issue covers at least one week")
    if len(ordered) == 1:
        return str(ordered[0])
    return f"{ordered[0]}..{ordered[-1]}"


def _newest_first(entry: Entry) -> tuple[float, str, str, str, str]:
    # Ties beyond the id only happen for duplicate ids; the rest keeps the
    # order total so the input order never shows through.
    return (-entry.when().timestamp(), entry.id, entry.source, entry.title, entry.link or "")


def _theme_order(present: Iterable[str], themes: Sequence[Theme]) -> list[str]:
    """Config order, then other named themes alphabetically, ``Other`` last."""
    names = set(present)
    if not themes:
        return sorted(names, key=lambda t: (t == OTHER_THEME, t.casefold(), t))
    configured = [t.name for t in themes if t.name in names]
    rest = sorted(names - set(configured) - {OTHER_THEME}, key=lambda t: (t.casefold(), t))
    tail = [OTHER_THEME] if OTHER_THEME in names else []
    return [*configured, *rest, *tail]


def _fold_duplicates(
    entries: Sequence[Entry],
    settings: DedupSettings | None,
    wanted: set[IsoWeek] | None,
    tz: ZoneInfo,
    place: Mapping[str, IsoWeek],
) -> Sequence[Entry]:
    """The entries of the wanted weeks with cross-source duplicates folded into their primaries.

    Weeks are filtered first (a carried entry counts in the week it is
    placed in), so a primary outside the issue never swallows a duplicate
    inside it.
    """
    if settings is None or not settings.enabled:
        return entries
    kept = [e for e in entries if wanted is None or place.get(e.id, week_of(e, tz)) in wanted]
    return merge_duplicates(kept, settings)


def build_issue(
    entries: Sequence[Entry],
    *,
    title: str,
    weeks: Sequence[IsoWeek] | None,
    themes: Sequence[Theme],
    source_themes: Mapping[str, str],
    tz: ZoneInfo,
    key: str,
    place: Mapping[str, IsoWeek] | None = None,
    dedup: DedupSettings | None = None,
) -> Issue:
    """Group ``entries`` into an ``Issue``.

    Only entries whose week (in ``tz``) is in ``weeks`` are kept; ``None``
    keeps every entry. Sections run by week, newest first, then by theme in
    config order with ``Other`` last (alphabetically when no themes are
    configured); entries within a section run newest first, then by id. Weeks
    without entries get no section. ``Issue.weeks`` is the requested weeks
    (or, for ``None``, the weeks that have entries), oldest first. The same
    entries in any order give an identical Issue. ``place`` puts the entries
    it names (by id) in the given week instead of their own: an issue
    carrying earlier weeks' entries shows them in its own week. With
    ``dedup`` enabled, one story carried by several sources is shown once
    (see ``dedup``).
    """
    wanted = set(weeks) if weeks is not None else None
    entries = _fold_duplicates(entries, dedup, wanted, tz, place or {})
    matcher = _matcher(tuple(themes))
    grouped: dict[IsoWeek, dict[str, list[Entry]]] = defaultdict(lambda: defaultdict(list))
    for entry in entries:
        week = place[entry.id] if place and entry.id in place else week_of(entry, tz)
        if wanted is not None and week not in wanted:
            continue
        if themes:
            theme = matcher.match(entry) or source_themes.get(entry.source) or OTHER_THEME
        else:
            theme = theme_of(entry, themes, source_themes)
        grouped[week][theme].append(entry)

    sections = []
    for week in sorted(grouped, reverse=True):
        by_theme = grouped[week]
        for theme in _theme_order(by_theme, themes):
            sections.append(Section(theme=theme, week=week, entries=tuple(sorted(by_theme[theme], key=_newest_first))))
    covered = sorted(wanted) if wanted is not None else sorted(grouped)
    return Issue(key=key, title=title, weeks=tuple(covered), sections=tuple(sections))


def fold_thin_sections(issue: Issue, min_per_theme: int) -> Issue:
    """``issue`` with each section of fewer than ``min_per_theme`` entries folded into its week's ``Other``.

    The folded entries join ``Other`` (created last in the week when it is
    missing), newest first like every section. ``Other`` itself never folds.
    """
    if min_per_theme <= 1:
        return issue
    sections: list[Section] = []
    by_week: dict[IsoWeek, list[Section]] = {}
    for section in issue.sections:
        by_week.setdefault(section.week, []).append(section)
    for week, week_sections in by_week.items():
        thin = [s for s in week_sections if s.theme != OTHER_THEME and len(s.entries) < min_per_theme]
        if not thin:
            sections.extend(week_sections)
            continue
        kept = [s for s in week_sections if s not in thin and s.theme != OTHER_THEME]
        other = [e for s in week_sections if s.theme == OTHER_THEME for e in s.entries]
        other.extend(e for s in thin for e in s.entries)
        sections.extend(kept)
        sections.append(Section(theme=OTHER_THEME, week=week, entries=tuple(sorted(other, key=_newest_first))))
    return dataclasses.replace(issue, sections=tuple(sections))
