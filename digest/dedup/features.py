"""What an entry is compared by when looking for duplicates: normalised headline, words, names, shingles.

Pure text work for ``digest.dedup``: Unicode compatibility forms, case,
quotes and dashes folded; a headline's lead-in ("Exclusive:") and trailing
site name (" - Reuters", " | SecurityWeek", "(krebsonsecurity.com)")
dropped; content words stemmed lightly ("patches" = "patched" = "patch");
numbers ("2,000", "two", "CVE-2024-1234") and names (capitalised words,
acronyms) kept apart for the vetoes; summaries cut into three-word shingles.
Every pattern here is linear on hostile input (no nested quantifiers that
can split a word two ways).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from digest.models import Entry
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
EQUAL_TITLE_WORDS = 4


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
        if cut != bare and len(_words(cut)) >= EQUAL_TITLE_WORDS:
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
class Features:
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


def title_parts(title: str) -> tuple[str, int, frozenset[str], frozenset[str], frozenset[str]]:
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


def features(entry: Entry) -> Features:
    # A title made from the summary is compared as text, not as a headline.
    title, count, tokens, numbers, names = title_parts("" if entry.title_derived else entry.title)
    text = entry.summary if entry.summary.strip() else _TAG.sub(" ", entry.content[: _TEXT_CHARS * 2])
    # Plain \w+ words: shingles only need to be equal where the texts are.
    text_words = _TEXT_WORD.findall(_fold(text[:_TEXT_CHARS]))[:_TEXT_WORDS]
    shingles = frozenset(" ".join(text_words[i : i + 3]) for i in range(len(text_words) - 2))
    return Features(
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


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def title_similarity(a: str, b: str) -> float:
    """How alike two headlines are, 0–1 (see ``title_score``)."""
    return title_score(title_parts(a)[2], title_parts(b)[2])


def title_score(a: frozenset[str], b: frozenset[str]) -> float:
    """difflib's ratio over the sorted content tokens.

    Over two sorted lists of distinct tokens difflib matches exactly the
    common ones, so its ratio is the Dice coefficient ``2|A∩B| / (|A|+|B|)``,
    computed here directly.
    """
    if len(a) < _MIN_TITLE_TOKENS or len(b) < _MIN_TITLE_TOKENS:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))
