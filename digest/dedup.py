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
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from digest.config import DedupSettings
from digest.models import Entry, Sighting
from digest.sources.ids import canonical_url

#: Words that say nothing about which story a headline tells.
_STOPWORD_TEXT = """
    a an the and or but nor of to in on at for with by from as into onto over under after before
    about against amid among between via per than then so not no is are was were be been being am
    it its this that these those what which who whom whose how why when where there here
    do does did done has have had will would can could should may might must shall
    he she they we you i his her their our your my me him them
    new says said say saying more most some all any just now also still again very much many
    up down out off if
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_NUMBER_WORDS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "dozen": "12",
}  # fmt: skip
_FOLD = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    }
)  # fmt: skip
_LEAD_IN = re.compile(
    r"^(?:\W*(?:exclusive|breaking(?: news)?|update[d]?|report|analysis|watch|video|live|opinion|"
    r"just in|explainer|podcast)\s*[:|-]\s*)+",
    re.IGNORECASE,
)
#: " - Reuters", " | SecurityWeek", " - The Record from Recorded Future News": a short tail after a separator.
# Each word must end at a space or at the end, so a failed match cannot backtrack by splitting words.
_SITE_TAIL = re.compile(r"\s+[-|·:]\s+(?:[^\s|·]+(?:\s+|$)){1,8}$")
#: "(krebsonsecurity.com)", "(Reuters)": a site named in brackets at the end.
_BRACKET_TAIL = re.compile(r"\s*\((?:[\w-]+\.)+[a-z]{2,}\)$|\s*\((?:reuters|ap|afp|bloomberg|upi)\)$", re.IGNORECASE)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_WORD = re.compile(r"\w+(?:[.'-]\w+)*")
_UNIT = re.compile(r"(?<=\d)(?:bn|b|m|k|mn|st|nd|rd|th|s)$")
_TAG = re.compile(r"<[^>]*>")
_TEXT_WORDS = 400  # words of an entry's text compared; enough to tell stories apart, bounded on huge posts
_TEXT_CHARS = 4000
_TEXT_WORD = re.compile(r"\w+")
_MIN_SHINGLES = 6  # shorter texts (a one-liner, a bare title) say too little to match on
_MIN_TITLE_TOKENS = 3  # fewer content words ("Ransomware", "What is this?") never match by similarity
_EQUAL_TITLE_WORDS = 4
_EQUAL_TITLE_CONTENT = 2


def canonical_link(url: str | None) -> str | None:
    """``url`` in the canonical form links are compared in, or ``None`` when it is not a usable URL."""
    if not url or not url.strip():
        return None
    try:
        return canonical_url(url)
    except ValueError:  # a port out of range, a bracketed host that is no IPv6 address, ...
        return None


def _fold(text: str, *, keep_case: bool = False) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_FOLD)
    return " ".join((text if keep_case else text.casefold()).split())


def _headline(title: str) -> str:
    """The headline itself, case kept: without a lead-in ("Exclusive:") or a trailing site name."""
    bare = _LEAD_IN.sub("", _fold(title, keep_case=True))
    for tail in (_BRACKET_TAIL, _SITE_TAIL):
        cut = tail.sub("", bare)
        # Only a tail after a headline of its own is a site name: "Russia - what now" stays whole.
        if cut != bare and len(_words(cut)) >= _EQUAL_TITLE_WORDS:
            bare = cut
    return bare


def normalise_title(title: str) -> str:
    """The headline as compared: folded, without lead-in or trailing site name, one space between words."""
    return " ".join(_words(_headline(title).casefold()))


def _words(text: str) -> list[str]:
    """Words of folded text; hyphens split words ("zero-day") but not numbers ("cve-2024-1234")."""
    out: list[str] = []
    for word in _WORD.findall(_THOUSANDS.sub("", text)):
        word = re.sub(r"'s$", "", word).replace("'", "")
        if any(c.isdigit() for c in word):
            out.append(word)
        else:
            out.extend(p for p in re.split(r"[-.]", word) if p)
    return [w for w in out if w]


def _names(headline: str) -> frozenset[str]:
    """Tokens of the names in a headline: capitalised words after the first, and acronyms.

    In a Title Case headline every word is capitalised, so only acronyms
    ("CISA", "ICBC") count there.
    """
    words = headline.split()
    longer = [w for w in words[1:] if len(w) >= 4 and w.casefold() not in STOPWORDS]
    title_case = bool(longer) and sum(w[0].isupper() for w in longer) >= 0.75 * len(longer)
    out: set[str] = set()
    for n, raw in enumerate(words):
        letters = "".join(c for c in raw if c.isalpha())
        acronym = len(letters) >= 2 and letters.isupper()
        after_colon = n > 0 and words[n - 1].endswith(":")
        capitalised = bool(letters) and letters[0].isupper() and n > 0 and not after_colon
        if acronym or (capitalised and not title_case):
            for w in _words(raw.casefold()):
                if w not in STOPWORDS and not any(c.isdigit() for c in w):
                    out.add(_stem(w))
    return frozenset(out)


def _stem(word: str) -> str:
    """A light English stem, enough to equate "patches", "patched" and "patch"."""
    if word.endswith("s's") or word.endswith("s'"):
        word = word.rstrip("'")
    for old, new in (("isation", "ization"), ("ise", "ize"), ("ised", "ized"), ("ising", "izing")):
        if word.endswith(old) and len(word) > len(old) + 3:
            word = word[: -len(old)] + new
            break
    word = {"defense": "defence", "offense": "offence", "licence": "license"}.get(word, word)
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")) and len(word) > 4:
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


@dataclass(frozen=True, slots=True)
class _Features:
    """What one entry is compared by, worked out once."""

    title: str  # normalised
    title_words: int
    tokens: frozenset[str]  # content words, stemmed
    numbers: frozenset[str]
    names: frozenset[str]  # stemmed tokens of capitalised words and acronyms
    shingles: frozenset[str]
    link: str | None
    when: float
    sources: frozenset[str]  # its own and its sightings'


def _title_parts(title: str) -> tuple[str, int, frozenset[str], frozenset[str], frozenset[str]]:
    """Normalised title, its word count, content tokens (stemmed, numbers included), numbers and names."""
    headline = _headline(title)
    norm = " ".join(_words(headline.casefold()))
    words = norm.split()
    tokens: set[str] = set()
    numbers: set[str] = set()
    for w in words:
        if any(c.isdigit() for c in w):
            numbers.add(_UNIT.sub("", w))
        elif w in _NUMBER_WORDS:
            numbers.add(_NUMBER_WORDS[w])
        elif w not in STOPWORDS:
            tokens.add(_stem(w))
    return norm, len(words), frozenset(tokens | numbers), frozenset(numbers), _names(headline)


def _features(entry: Entry) -> _Features:
    # A title made from the summary is compared as text, not as a headline.
    title, count, tokens, numbers, names = _title_parts("" if entry.title_derived else entry.title)
    text = entry.summary if entry.summary.strip() else _TAG.sub(" ", entry.content[: _TEXT_CHARS * 2])
    # Plain \w+ words: shingles only need to be equal where the texts are.
    text_words = _TEXT_WORD.findall(_fold(text[:_TEXT_CHARS]))[:_TEXT_WORDS]
    shingles = frozenset(" ".join(text_words[i : i + 3]) for i in range(len(text_words) - 2))
    return _Features(
        title=title,
        title_words=count,
        tokens=tokens,
        numbers=numbers,
        names=names,
        shingles=shingles if len(shingles) >= _MIN_SHINGLES else frozenset(),
        link=canonical_link(entry.link),
        when=entry.when().timestamp(),
        sources=frozenset(entry.sources),
    )


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def title_similarity(a: str, b: str) -> float:
    """How alike two headlines are, 0–1 (see ``_title_score``)."""
    return _title_score(_title_parts(a)[2], _title_parts(b)[2])


def _title_score(a: frozenset[str], b: frozenset[str]) -> float:
    """difflib's ratio over the sorted content tokens.

    Over two sorted lists of distinct tokens difflib matches exactly the
    common ones, so its ratio is the Dice coefficient ``2|A∩B| / (|A|+|B|)``,
    computed here directly.
    """
    if len(a) < _MIN_TITLE_TOKENS or len(b) < _MIN_TITLE_TOKENS:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))


def _numbers_clash(a: _Features, b: _Features) -> bool:
    return bool(a.numbers and b.numbers and not (a.numbers & b.numbers))


def _names_clash(a: _Features, b: _Features) -> bool:
    """Each headline names something the other does not: "Exchange" against "Outlook"."""
    return bool(a.names - b.tokens) and bool(b.names - a.tokens)


def _equal_titles(a: _Features, b: _Features) -> bool:
    return a.title == b.title and a.title_words >= _EQUAL_TITLE_WORDS and len(a.tokens) >= _EQUAL_TITLE_CONTENT


def match_reason(a: Entry, b: Entry, settings: DedupSettings) -> str | None:
    """Why ``a`` and ``b`` tell one story, or ``None``.

    The reason is ``"link"``, ``"title"``, ``"similar title"`` or
    ``"similar text"``. Entries sharing a source are never one story.
    """
    return _reason(_features(a), _features(b), settings)


def _reason(a: _Features, b: _Features, settings: DedupSettings) -> str | None:
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
        min(a.title_words, b.title_words) >= _EQUAL_TITLE_WORDS
        and _title_score(a.tokens, b.tokens) >= settings.title_ratio
        and not _names_clash(a, b)
    ):
        return "similar title"
    if a.shingles and b.shingles and _jaccard(a.shingles, b.shingles) >= settings.text_jaccard:
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


def _candidates(feats: Sequence[_Features], settings: DedupSettings) -> dict[int, set[int]]:
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
        if f.title_words >= _EQUAL_TITLE_WORDS:
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
    feats = [_features(e) for e in ordered]
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
