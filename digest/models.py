"""Plain values passed between the pipeline stages.

Everything here is a frozen, slotted dataclass with no I/O. Datetimes are
always timezone-aware. Stages take and return these; none of them knows the
whole ``Config``.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

OTHER_THEME = "Other"
#: The section an edition's pinned entries go to: first, and in every variant.
TOP_STORIES = "Top stories"

_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


class SourceKind(StrEnum):
    FEED = "feed"
    LISTING = "listing"


class ListingFormat(StrEnum):
    HTML = "html"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class Selectors:
    """CSS selectors for an HTML listing; all but ``item`` are optional.

    Each optional selector is evaluated inside one matched item. ``link``
    takes the ``href`` of the matched element (or of its first ``a``);
    ``date`` takes a ``datetime`` attribute when present, else the text.
    """

    item: str
    title: str | None = None
    link: str | None = None
    date: str | None = None
    summary: str | None = None
    author: str | None = None


#: The default record shape of a text listing: author lines, then the date
#: line that anchors the entry, then summary lines.
DEFAULT_TEXT_RECORD: tuple[str, ...] = ("authors", "date", "summary")


@dataclass(frozen=True, slots=True)
class Source:
    """One configured source of entries.

    ``url`` is an http(s) URL or an absolute local path. ``record`` gives the
    order of line groups in a text listing (``title``, ``link``,
    ``authors``, ``date``, ``summary``); the ``date`` line anchors each entry.
    """

    name: str
    kind: SourceKind
    url: str
    format: ListingFormat | None = None
    theme: str | None = None
    selectors: Selectors | None = None
    date_format: str | None = None
    record: tuple[str, ...] = DEFAULT_TEXT_RECORD
    #: ``false`` pauses the source: it is not fetched; what it gave stays.
    enabled: bool = True

    @property
    def is_remote(self) -> bool:
        return self.url.startswith(("http://", "https://"))


@dataclass(frozen=True, slots=True)
class Author:
    """A byline: ``name`` and, when the source says, ``affiliation``."""

    name: str
    affiliation: str = ""


@dataclass(frozen=True, slots=True)
class Sighting:
    """Another source carrying an entry's story: the source's name and its own link.

    ``entry_id`` is the id of the other source's entry when ``dedup`` folded
    a different entry into this one; it is ``None`` for a sighting of the
    same id (see ``store``). An issue carries those entries too.
    """

    source: str
    link: str | None = None
    entry_id: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """One item gathered from a source.

    ``id`` is stable across fetches (see ``sources.ids``). ``summary`` is plain
    text; ``content`` is the source's HTML, unsanitised (render sanitises).
    ``title_derived`` is true when the source gave no title and ``title`` was
    made from the summary. ``first_seen`` is set by the store. ``also``
    holds the other sources that carry the same story: the store's
    sightings (the same id fetched from another source) and, once an issue
    is built, the duplicates ``dedup`` folded into this entry.
    """

    id: str
    source: str
    title: str
    link: str | None = None
    summary: str = ""
    content: str = ""
    authors: tuple[Author, ...] = ()
    published: dt.datetime | None = None
    tags: tuple[str, ...] = ()
    title_derived: bool = False
    first_seen: dt.datetime | None = None
    also: tuple[Sighting, ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source carrying this entry's story, its own first."""
        return (self.source, *(s.source for s in self.also))

    @property
    def carried_ids(self) -> tuple[str, ...]:
        """Its own id and the ids of the entries folded into it."""
        return tuple(dict.fromkeys((self.id, *(s.entry_id for s in self.also if s.entry_id is not None))))

    def when(self) -> dt.datetime:
        """The date that places this entry in a week: published, else first seen."""
        when = self.published or self.first_seen
        if when is None:
            raise ValueError(f"entry {self.id} has neither published nor first_seen")
        return when


@dataclass(frozen=True, slots=True, order=True)
class IsoWeek:
    """An ISO 8601 week (Monday to Sunday), e.g. ``IsoWeek(2018, 2)``.

    ``str(week)`` is ``"2018-W02"``; ``IsoWeek.parse("2018-W02")`` reverses it.
    ``start`` and ``end`` are the Monday and Sunday; ``bounds(tz)`` gives the
    half-open interval of aware datetimes in that time zone.
    """

    year: int
    week: int

    def __post_init__(self) -> None:
        # Raises ValueError for week 53 of a 52-week year, and the like.
        dt.date.fromisocalendar(self.year, self.week, 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-W{self.week:02d}"

    @classmethod
    def parse(cls, text: str) -> IsoWeek:
        m = _WEEK_RE.match(text.strip())
        if not m:
            raise ValueError(f"not an ISO week like 2018-W02: {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def of(cls, when: dt.datetime | dt.date, tz: ZoneInfo | None = None) -> IsoWeek:
        """The week containing ``when``; an aware datetime is first put in ``tz``."""
        if isinstance(when, dt.datetime):
            if tz is not None:
                when = when.astimezone(tz)
            when = when.date()
        iso = when.isocalendar()
        return cls(iso.year, iso.week)

    @property
    def start(self) -> dt.date:
        return dt.date.fromisocalendar(self.year, self.week, 1)

    @property
    def end(self) -> dt.date:
        return dt.date.fromisocalendar(self.year, self.week, 7)

    def bounds(self, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        start = dt.datetime.combine(self.start, dt.time(), tzinfo=tz)
        after = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), tzinfo=tz)
        return start, after

    def previous(self) -> IsoWeek:
        return IsoWeek.of(self.start - dt.timedelta(days=7))

    def next(self) -> IsoWeek:
        return IsoWeek.of(self.start + dt.timedelta(days=7))


@dataclass(frozen=True, slots=True)
class Theme:
    """A theme rule. Rules are tried in config order; the first match wins.

    ``keywords`` match whole words, ``phrases`` whole word sequences, both
    case-insensitively; ``categories`` match feed tags; ``sources`` match
    source names.
    """

    name: str
    keywords: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Section:
    """The entries of one theme in one week, in display order."""

    theme: str
    week: IsoWeek
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Editorial:
    """What an edition file set on an issue, as the issue carries it (and its freeze stores it).

    Empty strings mean "not set". ``note_html`` is already sanitised and
    ``note_text`` wrapped at 72 columns. ``sha256`` is the hash of the edition
    file's bytes as applied, so a later change to the file can be told apart.
    """

    sha256: str
    subject: str = ""
    headline: str = ""
    preheader: str = ""
    note_html: str = ""
    note_text: str = ""


@dataclass(frozen=True, slots=True)
class Issue:
    """One issue of the digest: the weeks it covers and its sections.

    ``key`` names the issue in the store and in files: ``"2018-W02"`` for
    one week, ``"2018-W01..2018-W03"`` for a range. Sections are ordered by
    week (newest first), then by theme in config order, ``Other`` last.

    ``carried`` names the entries of earlier weeks that this issue carries
    (published late, or held back), each with its own week; they sit in the
    sections of the issue's week. ``updates`` are entries sent in an earlier
    issue that changed materially since, shown once under "Updated"; they
    are not part of ``entries``.
    """

    key: str
    title: str
    weeks: tuple[IsoWeek, ...]
    sections: tuple[Section, ...]
    carried: tuple[tuple[str, IsoWeek], ...] = ()
    updates: tuple[Section, ...] = ()
    #: The editor's edition applied to this issue, or None without one.
    editorial: Editorial | None = None

    def carried_from(self, entry_id: str) -> IsoWeek | None:
        """The own week of a carried entry, or None for an entry of the issue's weeks."""
        for eid, week in self.carried:
            if eid == entry_id:
                return week
        return None

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(e for s in self.sections for e in s.entries)

    @property
    def themes(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for s in self.sections:
            seen.setdefault(s.theme)
        return tuple(seen)


class SubscriberStatus(StrEnum):
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    #: Marked the digest as spam (a feedback report): never re-activated by an import.
    COMPLAINED = "complained"


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A recipient. ``themes`` empty means every theme."""

    email: str
    name: str = ""
    themes: frozenset[str] = field(default_factory=frozenset)
    timezone: str | None = None
    status: SubscriberStatus = SubscriberStatus.ACTIVE

    def wants(self, theme: str) -> bool:
        return not self.themes or theme in self.themes


@dataclass(frozen=True, slots=True)
class TokenSet:
    """The placeholder tokens of one rendering, one per per-subscriber value.

    Render writes these where a subscriber's values go; ``placeholders.personalise``
    replaces them. ``fresh()`` draws them at random for each rendering, so no
    feed can know them: each is ``X`` and 32 hex digits, ASCII letters and
    digits only (Jinja2 escaping, premailer, quoted-printable and base64
    folding leave them alone), and since ``X`` occurs only at the start, no
    token overlaps itself or another one.
    """

    name: str
    email: str
    greeting: str
    unsubscribe_url: str
    footer_note: str
    preferences_url: str

    @classmethod
    def fresh(cls) -> TokenSet:
        return cls(*(f"X{secrets.token_hex(16)}" for _ in range(6)))

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """``(key, token)`` for each value, keyed like ``placeholders.Values``."""
        return (
            ("name", self.name),
            ("email", self.email),
            ("greeting", self.greeting),
            ("unsubscribe_url", self.unsubscribe_url),
            ("footer_note", self.footer_note),
            ("preferences_url", self.preferences_url),
        )


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendered variant of an issue (one distinct theme selection).

    ``html`` is already CSS-inlined. ``subject``, ``html`` and ``text`` hold
    the ``tokens`` where per-subscriber values go; ``placeholders.personalise``
    fills them. The tokens are kept with the variant when it is frozen.
    """

    issue_key: str
    variant: str
    themes: tuple[str, ...]
    subject: str
    html: str
    text: str
    tokens: TokenSet = field(default_factory=TokenSet.fresh)


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the store remembers of a source between fetches."""

    etag: str | None = None
    last_modified: str | None = None
    item_count: int | None = None
    failures: int = 0


class FetchStatus(StrEnum):
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    FAILED = "failed"
    BROKEN = "broken"


@dataclass(frozen=True, slots=True)
class SourceResult:
    """The outcome of gathering one source.

    ``state`` is the new state to store; for ``failed`` and ``broken`` it is
    ``None`` and the store keeps the old state (only counting the failure).

    The counts note what parsing dropped or cut without failing the source:
    ``dropped_links`` links that were not usable URLs (the entries kept,
    without a link), ``dropped_entries`` entries that could not be read at
    all, ``bad_dates`` dates outside 1970–2100 (treated as missing),
    ``cut_entries`` entries beyond ``[fetch] max_entries`` (the oldest),
    ``cut_texts`` summaries or contents cut to ``[fetch] max_text``.
    """

    source: str
    status: FetchStatus
    entries: tuple[Entry, ...] = ()
    state: SourceState | None = None
    error: str = ""
    elapsed: float = 0.0
    dropped_links: int = 0
    dropped_entries: int = 0
    bad_dates: int = 0
    cut_entries: int = 0
    cut_texts: int = 0

    @property
    def notes(self) -> dict[str, int]:
        """The non-zero counts of what parsing dropped or cut, by field name."""
        counts = {
            "dropped_links": self.dropped_links,
            "dropped_entries": self.dropped_entries,
            "bad_dates": self.bad_dates,
            "cut_entries": self.cut_entries,
            "cut_texts": self.cut_texts,
        }
        return {k: v for k, v in counts.items() if v}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One finished message: envelope and the exact bytes (CRLF line ends)."""

    issue_key: str
    recipient: str
    message_id: str
    data: bytes
    #: The return path (MAIL FROM) of this message when it has its own (VERP); "" for the sender's.
    envelope_from: str = ""
    #: No line of ``data`` starts with a dot, so SMTP sends it without dot-stuffing it first.
    dot_safe: bool = False


class Delivery(StrEnum):
    """States of a row in the send ledger (one row per issue and subscriber)."""

    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    FAILED_PERMANENT = "failed-permanent"
    FAILED_TEMPORARY = "failed-temporary"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"
