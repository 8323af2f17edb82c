"""Tables of the store as they are now (``migrations`` holds the numbered steps that make them).

Types are chosen to work unchanged on SQLite and PostgreSQL: text, integers,
booleans, and JSON kept as text. Every timestamp is stored as fixed-width UTC
ISO 8601 text (``2018-01-09T03:04:05.000000+00:00``), so SQL comparisons and
ordering are plain string comparisons on both databases; ``UtcDateTime``
converts on the way in and out and refuses naive datetimes.

Each migration (``digest.store.migrations``) runs in one transaction together
with the row that records its number in the ``migrations`` table, so a crash
leaves either both or neither.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

_UTC = dt.UTC


def utc_text(when: dt.datetime) -> str:
    """``when`` as the stored form: UTC, microseconds, fixed width."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"the store takes timezone-aware datetimes only, got {when!r}")
    return when.astimezone(_UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "+00:00"


def from_utc_text(raw: str) -> dt.datetime:
    """The aware UTC datetime of a stored timestamp."""
    return dt.datetime.fromisoformat(raw).astimezone(_UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """An aware datetime stored as sortable UTC text (see the module docstring)."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> str | None:
        return None if value is None else utc_text(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else from_utc_text(value)


metadata = MetaData()

migrations = Table(
    "migrations",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

sources = Table(
    "sources",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("item_count", Integer),
    Column("failures", Integer, nullable=False, default=0),
    Column("last_ok", UtcDateTime),
    Column("last_error", Text),
    Column("last_fetch", UtcDateTime),
)

entries = Table(
    "entries",
    metadata,
    Column("id", String(300), primary_key=True),
    Column("source", String(200), nullable=False),
    Column("title", Text, nullable=False),
    Column("link", Text),
    Column("summary", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("authors", Text, nullable=False),  # JSON list of {name, affiliation}
    Column("tags", Text, nullable=False),  # JSON list of strings
    Column("published", UtcDateTime),
    # The publisher's UTC offset in seconds, so ``published`` comes back
    # with the offset it was given (the JSON output shows it).
    Column("published_offset", Integer),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Entry.when(): published, else first_seen; kept so filters and ordering use an index.
    Column("sort_at", UtcDateTime, nullable=False),
    Column("title_derived", Boolean, nullable=False, default=False),
    Column("content_hash", String(64), nullable=False),
    # Migration 11: when its source last listed it (a 304 counts as listing it again); `digest prune` goes by this.
    Column("last_seen", UtcDateTime),
    Index("ix_entries_sort_at", "sort_at"),
    Index("ix_entries_source", "source"),
)

#: Another source carrying an entry id that was first stored from a different
#: source: what that source showed, kept apart so the entry row never flips.
entry_sightings = Table(
    "entry_sightings",
    metadata,
    Column("entry_id", String(300), ForeignKey("entries.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(200), nullable=False),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("link", Text),
    Column("title", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    PrimaryKeyConstraint("entry_id", "source"),
)

issues = Table(
    "issues",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("payload", Text, nullable=False),
    Column("frozen_at", UtcDateTime, nullable=False),
)

variants = Table(
    "variants",
    metadata,
    Column("issue_key", String(100), ForeignKey("issues.key", ondelete="CASCADE"), nullable=False),
    Column("variant", String(200), nullable=False),
    Column("position", Integer, nullable=False),
    Column("themes", Text, nullable=False),  # JSON list of theme names
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    # Migration 4: the placeholder tokens this variant was rendered with (JSON
    # object, see placeholders.tokens_to_json). Filled for every row by the migration.
    Column("tokens", Text),
    PrimaryKeyConstraint("issue_key", "variant"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("issue_key", String(100), nullable=False),
    Column("email", String(320), nullable=False),
    Column("variant", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", UtcDateTime),
    Column("last_code", Integer),
    Column("last_error", Text),
    Column("updated_at", UtcDateTime, nullable=False),
    # When the row was first claimed: ``[sender] retry_for`` counts from here (migration 5).
    Column("first_attempt", UtcDateTime),
    PrimaryKeyConstraint("issue_key", "email"),
    Index("ix_deliveries_issue_state", "issue_key", "state"),
)

subscriber_status = Table(
    "subscriber_status",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
    Column("how", Text, nullable=False),
)

#: What happened to a subscriber's status, and why: appended to, never changed (migration 5).
subscriber_events = Table(
    "subscriber_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("event", String(40), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_subscriber_events_email", "email"),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("ttl_seconds", Float, nullable=False),
)

#: One row per fetch of a source (the newest few per source are kept): the history that
#: ``digest sources`` and the dashboard show, and the last status with its reason.
fetch_log = Table(
    "fetch_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(200), nullable=False),
    Column("fetched_at", UtcDateTime, nullable=False),
    Column("status", String(20), nullable=False),
    Column("new", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("items", Integer),
    Column("elapsed", Float, nullable=False),
    Column("error", Text),
    Index("ix_fetch_log_source", "source", "fetched_at"),
)

#: Every bounce, complaint and mailto unsubscribe read from the bounce mailbox, once each:
#: ``report`` identifies the mailbox message, so a second scan records nothing new.
bounce_events = Table(
    "bounce_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("report", String(64), nullable=False),
    Column("email", String(320), nullable=False),
    Column("issue_key", String(100), nullable=False),
    Column("verdict", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("detail", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("report", "email", name="uq_bounce_events_report_email"),
    Index("ix_bounce_events_email", "email", "at"),
)

#: VERP tags: ``bounces+<tag>@domain`` → the issue and the address it was sent to.
verp_tags = Table(
    "verp_tags",
    metadata,
    Column("tag", String(64), primary_key=True),
    Column("issue_key", String(100), nullable=False),
    Column("email", String(320), nullable=False),
)

# Migration 3: which issue carried each entry, and the weeks held back for too few entries.
issue_entries = Table(
    "issue_entries",
    metadata,
    # The primary key is the entry alone: an entry is in at most one issue.
    Column("entry_id", String(300), primary_key=True),
    Column("issue_key", String(100), ForeignKey("issues.key", ondelete="CASCADE"), nullable=False),
    # True: the issue did not carry it, the entry was too old (past max_hold_weeks) when the issue froze.
    Column("expired", Boolean, nullable=False, default=False),
    # The entry's own week ("2018-W02") when it was carried into a later week's issue, else NULL.
    Column("carried_from", String(20)),
    # content_hash of the entry as last shown (the [updates] policy compares against it).
    Column("content_hash", String(64), nullable=False),
    # The issue whose "Updated" section last showed it, else NULL.
    Column("updated_in", String(100)),
    Index("ix_issue_entries_issue", "issue_key"),
)

held_issues = Table(
    "held_issues",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("held_at", UtcDateTime, nullable=False),
    Column("entries", Integer, nullable=False),
)

#: Which worker (``host:pid``) runs each batch job of the workers' queue (migration 9).
batch_holders = Table(
    "batch_holders",
    metadata,
    Column("job_id", BigInteger, primary_key=True, autoincrement=False),
    Column("worker", String(200), nullable=False),
    Column("issue_key", String(100), nullable=False),
    Column("since", UtcDateTime, nullable=False),
)

#: Issues frozen for an editor's approval (migration 10): since when each waits, and the
#: fingerprint (SHA-256 of its variants' subject, HTML and text) the editors were last sent.
approval_requests = Table(
    "approval_requests",
    metadata,
    Column("issue_key", String(100), primary_key=True),
    Column("since", UtcDateTime, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("notified_at", UtcDateTime),
)

#: Who approved which frozen bytes of an issue, and when (migration 10): one row per fingerprint.
approvals = Table(
    "approvals",
    metadata,
    Column("issue_key", String(100), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("approved_by", String(200), nullable=False),
    Column("approved_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("issue_key", "fingerprint"),
)

#: People who joined on the web form: ``pending`` until they confirm, then ``active``.
#: Leaving is recorded in ``subscriber_status`` like any list subscriber's.
web_subscribers = Table(
    "web_subscribers",
    metadata,
    Column("email", String(320), primary_key=True),  # lowercased key
    Column("address", String(320), nullable=False),  # as given (the local part's case kept)
    Column("name", Text, nullable=False),
    Column("themes", Text, nullable=False),  # JSON list; empty means every theme
    Column("status", String(20), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime),
)

#: Confirmation links sent: only the SHA-256 of each random token is kept. The rows
#: are also the send log the rate limits count (kept after use, until the purge).
confirm_tokens = Table(
    "confirm_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("sent_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
    Index("ix_confirm_tokens_email", "email", "sent_at"),
)

#: Append-only consent records: subscribe, confirm, preferences, unsubscribe, complaint.
consents = Table(
    "consents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("text_sha256", String(64), nullable=False),  # of the consent text shown; "" when none was
    Column("detail", Text, nullable=False),  # e.g. the themes chosen, as JSON
    Column("ip", String(64)),  # only with [subscribe] record_ip
    Index("ix_consents_email", "email", "at"),
)

#: Themes a subscriber chose on their preferences page; wins over their list row's.
theme_choices = Table(
    "theme_choices",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("themes", Text, nullable=False),  # JSON list; empty means every theme
    Column("changed_at", UtcDateTime, nullable=False),
)

#: Salted hashes of erased addresses, so that no list import brings them back.
forgotten = Table(
    "forgotten",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("forgotten_at", UtcDateTime, nullable=False),
)

#: Small values the store makes for itself once (the salt of ``forgotten``).
store_keys = Table(
    "store_keys",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)


#: Migration 11: the ledger of an issue finished long ago, compacted by ``digest prune`` to counts.
delivery_counts = Table(
    "delivery_counts",
    metadata,
    Column("issue_key", String(100), nullable=False),
    Column("variant", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("count", Integer, nullable=False),
    # The first and last ``updated_at`` of the rows counted (of ``sent`` rows: first and last sent).
    Column("first_at", UtcDateTime),
    Column("last_at", UtcDateTime),
    PrimaryKeyConstraint("issue_key", "variant", "state"),
)

#: Migration 11: ids of entries ``digest prune`` deleted, so a source listing one again never makes it new.
pruned_entries = Table(
    "pruned_entries",
    metadata,
    Column("id", String(300), primary_key=True),
    Column("source", String(200), nullable=False),
    Column("pruned_at", UtcDateTime, nullable=False),
)
