"""Cross-source duplicates: one story carried by several sources is shown once.

Pure: no I/O, no clock. ``find_groups`` splits a batch of entries into
groups, each a primary entry with the entries of other sources that carry the
same story; ``merge_duplicates`` folds every group into its primary, whose
``Entry.also`` then credits the other sources and their links.

Two entries of different sources tell one story when

- their links are equal in canonical form; or
- their normalised titles are equal and at least four words long (two of
  them more than stopwords); or
- they were published within ``window_hours`` of each other and their
  titles are similar (``title_ratio``) or their texts overlap
  (``text_jaccard``, over three-word shingles).

Titles are compared after normalisation: Unicode compatibility forms, case,
quotes and dashes folded; a lead-in such as "Exclusive:" and a trailing site
name (" - Reuters", " | SecurityWeek", "(krebsonsecurity.com)") dropped.
Two titles that both carry numbers (CVE ids, versions, counts, "two") but
share none are never the same story by title or text, so "Chrome 131
zero-day" and "Chrome 132 zero-day" stay apart.

Groups form around a primary and are not transitive: each duplicate matches
the primary itself. The primary is the entry of the first ``prefer`` source
in the group, else the earliest published. A group never holds two entries
of one source, counting the sources that already sighted an entry (the same
id fetched from several sources, see ``store``). The same entries in any
order give the same groups.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from digest.config import DedupSettings
from digest.dedup.features import (
    EQUAL_TITLE_WORDS,
    Features,
    canonical_link,
    features,
    jaccard,
    normalise_title,
    title_score,
    title_similarity,
)
from digest.models import Entry, Sighting

__all__ = [
    "Credit",
    "Group",
    "canonical_link",
    "credits",
    "find_groups",
    "match_reason",
    "merge_duplicates",
    "normalise_title",
    "title_similarity",
]

_EQUAL_TITLE_CONTENT = 2


def _numbers_clash(a: Features, b: Features) -> bool:
    return bool(a.numbers and b.numbers and not (a.numbers & b.numbers))


def _names_clash(a: Features, b: Features) -> bool:
    """Each headline names something the other does not: "Exchange" against "Outlook"."""
    return bool(a.names - b.tokens) and bool(b.names - a.tokens)


def _equal_titles(a: Features, b: Features) -> bool:
    return a.title == b.title and a.title_words >= EQUAL_TITLE_WORDS and len(a.tokens) >= _EQUAL_TITLE_CONTENT


def match_reason(a: Entry, b: Entry, settings: DedupSettings) -> str | None:
    """Why ``a`` and ``b`` tell one story, or ``None``.

    The reason is ``"link"``, ``"title"``, ``"similar title"`` or
    ``"similar text"``. Entries sharing a source are never one story.
    """
    return _reason(features(a), features(b), settings)


def _reason(a: Features, b: Features, settings: DedupSettings) -> str | None:
    if a.sources & b.sources:
        return None
    if a.link is not None and a.link == b.link:
        return "link"
    if _numbers_clash(a, b):
        return None
    if _equal_titles(a, b):
        return "title"
    if abs(a.when - b.when) > settings.window_hours * 3600:
        return None
    if (
        min(a.title_words, b.title_words) >= EQUAL_TITLE_WORDS
        and title_score(a.tokens, b.tokens) >= settings.title_ratio
        and not _names_clash(a, b)
    ):
        return "similar title"
    if a.shingles and b.shingles and jaccard(a.shingles, b.shingles) >= settings.text_jaccard:
        return "similar text"
    return None


@dataclass(frozen=True, slots=True)
class Group:
    """One story: the entry shown and the entries of other sources folded into it, in rank order."""

    primary: Entry
    duplicates: tuple[Entry, ...] = ()


def _rank_key(entry: Entry, prefer: dict[str, int]) -> tuple[int, float, str, str, str, str]:
    # Every field takes part so that even equal ids rank the same in any input order.
    return (
        prefer.get(entry.source, len(prefer)),
        entry.when().timestamp(),
        entry.id,
        entry.source,
        entry.title,
        entry.link or "",
    )


def _prefixes(sets: Sequence[frozenset[str]], jaccard: float) -> list[list[str]]:
    """Prefix filtering: of each set, the rarest keys two sets must share one of to reach ``jaccard``.

    With every set sorted by one global order (rarest first), two sets with
    Jaccard ≥ j share a key among the first ``|A| - ceil(j·|A|) + 1`` of each,
    so only those are indexed: exact, and it keeps common words ("hackers",
    "the company said") from pairing everything with everything.
    """
    freq = Counter(key for keys in sets for key in keys)
    out: list[list[str]] = []
    for keys in sets:
        ordered = sorted(keys, key=lambda k: (freq[k], k))
        need = math.ceil(jaccard * len(ordered) - 1e-9)  # an epsilon only ever lengthens the prefix
        out.append(ordered[: len(ordered) - need + 1] if ordered else [])
    return out


def _candidates(feats: Sequence[Features], settings: DedupSettings) -> dict[int, set[int]]:
    """Pairs worth comparing, as index → higher indexes: a shared link or title, or a shared prefix key.

    Only pairs across sources are formed, and a key only one source has is
    skipped, so a big batch of one source costs next to nothing. Title words
    and text shingles are indexed by their prefixes (see ``_prefixes``: a
    Dice ratio of r over title words is a Jaccard of r / (2 - r)) and pair
    only within the window.
    """
    window = settings.window_hours * 3600
    ratio = settings.title_ratio
    words = _prefixes([f.tokens for f in feats], ratio / (2 - ratio))
    shingles = _prefixes([f.shingles for f in feats], settings.text_jaccard)
    out: dict[int, set[int]] = defaultdict(set)
    exact: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    near: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for i, f in enumerate(feats):
        home = min(f.sources)
        if f.link is not None:
            exact["l " + f.link][home].append(i)
        if f.title_words >= EQUAL_TITLE_WORDS:
            exact["t " + f.title][home].append(i)
        for key in {*("w " + t for t in words[i]), *("s " + s for s in shingles[i])}:
            near[key].append((f.when, i))

    def add(i: int, j: int) -> None:
        a, b = (i, j) if i < j else (j, i)
        out[a].add(b)

    for same in exact.values():
        groups = list(same.values())
        for x, first in enumerate(groups):
            for second in groups[x + 1 :]:
                for i in first:
                    for j in second:
                        add(i, j)
    for timed in near.values():
        if len(timed) < 2 or len({min(feats[i].sources) for _, i in timed}) < 2:
            continue
        timed.sort()
        for p, (when, i) in enumerate(timed):
            for later, j in timed[p + 1 :]:
                if later - when > window:
                    break
                if not feats[i].sources & feats[j].sources:
                    add(i, j)
    return out


def find_groups(entries: Sequence[Entry], settings: DedupSettings) -> tuple[Group, ...]:
    """Every entry in exactly one group; groups in rank order (see the module docstring)."""
    prefer = {name: i for i, name in reversed(list(enumerate(settings.prefer)))}
    ordered = sorted(entries, key=lambda e: _rank_key(e, prefer))
    if not settings.enabled or len({s for e in ordered for s in e.sources}) < 2:
        return tuple(Group(e) for e in ordered)
    feats = [features(e) for e in ordered]
    pairs = _candidates(feats, settings)
    neighbours: dict[int, list[int]] = defaultdict(list)
    for i, js in pairs.items():
        for j in js:
            if _reason(feats[i], feats[j], settings) is not None:
                neighbours[i].append(j)
                neighbours[j].append(i)
    taken = [False] * len(ordered)
    groups: list[Group] = []
    for i, entry in enumerate(ordered):
        if taken[i]:
            continue
        taken[i] = True
        sources = set(feats[i].sources)
        members: list[int] = []
        # Best-ranked first, so the primary keeps the earliest (or preferred) copy of each source.
        for j in sorted(neighbours.get(i, ())):
            if taken[j] or feats[j].sources & sources:
                continue
            taken[j] = True
            sources |= feats[j].sources
            members.append(j)
        groups.append(Group(entry, tuple(ordered[j] for j in members)))
    return tuple(groups)


def _folded(entry: Entry) -> tuple[Sighting, ...]:
    """A duplicate's own sightings, now standing for the duplicate's id."""
    return tuple(dataclasses.replace(s, entry_id=s.entry_id or entry.id) for s in entry.also)


def _credits(group: Group) -> tuple[Sighting, ...]:
    """The primary's sightings, then each duplicate with its own sightings; one per source."""
    seen = {group.primary.source}
    out: list[Sighting] = []
    for sighting in (
        *group.primary.also,
        *(s for d in group.duplicates for s in (Sighting(d.source, d.link, d.id), *_folded(d))),
    ):
        if sighting.source not in seen:
            seen.add(sighting.source)
            out.append(sighting)
    return tuple(out)


def merge_duplicates(entries: Sequence[Entry], settings: DedupSettings) -> list[Entry]:
    """The primaries of ``find_groups``, each crediting its duplicates in ``Entry.also``."""
    return [
        dataclasses.replace(g.primary, also=_credits(g)) if g.duplicates else g.primary
        for g in find_groups(entries, settings)
    ]


@dataclass(frozen=True, slots=True)
class Credit:
    """What ``digest entries --json`` says of one entry: its story's sources, and its primary if folded."""

    sources: tuple[str, ...]
    duplicate_of: str | None = None


def credits(batches: Iterable[Sequence[Entry]], settings: DedupSettings) -> dict[str, Credit]:
    """Entry id → ``Credit``, grouping each batch (e.g. one week) on its own."""
    out: dict[str, Credit] = {}
    for batch in batches:
        for group in find_groups(batch, settings):
            sources = (group.primary.source, *(s.source for s in _credits(group)))
            out[group.primary.id] = Credit(sources)
            for dup in group.duplicates:
                out.setdefault(dup.id, Credit(sources, group.primary.id))
    return out
