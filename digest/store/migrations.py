"""The store's numbered migrations, each applied in a transaction with its own record.

``schema`` holds the tables as they are now; a migration that changed a table
freezes the table's earlier shape here, for the migrations before it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    insert,
    select,
    text,
)

from digest.store.schema import (
    UtcDateTime,
    approval_requests,
    approvals,
    batch_holders,
    bounce_events,
    confirm_tokens,
    consents,
    deliveries,
    delivery_counts,
    entries,
    entry_sightings,
    fetch_log,
    forgotten,
    held_issues,
    issue_entries,
    issues,
    locks,
    migrations,
    pruned_entries,
    sources,
    store_keys,
    subscriber_events,
    subscriber_status,
    theme_choices,
    verp_tags,
    web_subscribers,
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change; ``apply`` runs inside the caller's transaction."""

    number: int
    name: str
    apply: Callable[[Connection], None]


# Shapes of tables as an earlier migration created them, before a later one changed them.
_frozen = MetaData()

variants_v1 = Table(
    "variants",
    _frozen,
    Column("issue_key", String(100), ForeignKey(issues.c.key, ondelete="CASCADE"), nullable=False),
    Column("variant", String(200), nullable=False),
    Column("position", Integer, nullable=False),
    Column("themes", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    PrimaryKeyConstraint("issue_key", "variant"),
)


#: ``entries`` as migration 1 created it (migration 11 adds ``last_seen``).
entries_v1 = Table(
    "entries",
    _frozen,
    Column("id", String(300), primary_key=True),
    Column("source", String(200), nullable=False),
    Column("title", Text, nullable=False),
    Column("link", Text),
    Column("summary", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("authors", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("published", UtcDateTime),
    Column("published_offset", Integer),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("sort_at", UtcDateTime, nullable=False),
    Column("title_derived", Boolean, nullable=False, default=False),
    Column("content_hash", String(64), nullable=False),
    Index("ix_entries_sort_at", "sort_at"),
    Index("ix_entries_source", "source"),
)


def _initial(conn: Connection) -> None:
    # Creates the tables as defined above. When a later migration changes a
    # table, freeze its first shape here before editing the definition above.
    for table in (sources, entries_v1, issues, variants_v1, _deliveries_v1, subscriber_status, locks):
        table.create(conn)


def _fetch_log(conn: Connection) -> None:
    fetch_log.create(conn)


def _bounces(conn: Connection) -> None:
    bounce_events.create(conn)
    verp_tags.create(conn)


#: The fixed tokens every variant rendered before migration 4 holds (placeholders.LEGACY).
LEGACY_TOKENS = (
    '{"email": "DIGESTxEMAILx7f3a", "footer_note": "DIGESTxFOOTERx7f3a", "greeting": "DIGESTxGREETINGx7f3a", '
    '"name": "DIGESTxNAMEx7f3a", "unsubscribe_url": "DIGESTxUNSUBx7f3a"}'
)


def _variant_tokens(conn: Connection) -> None:
    # Variants frozen before tokens were random keep working: they hold the
    # old fixed tokens, so those are recorded as their token set.
    conn.execute(text("ALTER TABLE variants ADD COLUMN tokens TEXT"))
    conn.execute(text("UPDATE variants SET tokens = :legacy"), {"legacy": LEGACY_TOKENS})


#: ``deliveries`` as migration 1 created it (migration 5 adds ``first_attempt``).
_deliveries_v1 = Table(
    "deliveries",
    MetaData(),
    Column("issue_key", String(100), nullable=False),
    Column("email", String(320), nullable=False),
    Column("variant", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", UtcDateTime),
    Column("last_code", Integer),
    Column("last_error", Text),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("issue_key", "email"),
    Index("ix_deliveries_issue_state", "issue_key", "state"),
)


def _ledger_events(conn: Connection) -> None:
    # The column as the current definition has it, added in place (SQLite and PostgreSQL alike).
    column = deliveries.c.first_attempt
    kind = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE deliveries ADD COLUMN {column.name} {kind}"))
    # Rows tried before this column existed: their last change is the best bound there is (a later
    # time than the real first try, so their retries end no sooner than they should).
    conn.execute(deliveries.update().where(deliveries.c.attempts > 0).values(first_attempt=deliveries.c.updated_at))
    subscriber_events.create(conn)


def _issue_entries(conn: Connection) -> None:
    for table in (issue_entries, held_issues):
        table.create(conn)


def _sightings(conn: Connection) -> None:
    entry_sightings.create(conn)


def _people(conn: Connection) -> None:
    for table in (web_subscribers, confirm_tokens, consents, theme_choices, forgotten, store_keys):
        table.create(conn)


def _approvals(conn: Connection) -> None:
    for table in (approval_requests, approvals):
        table.create(conn)


def _prune(conn: Connection) -> None:
    column = entries.c.last_seen
    kind = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE entries ADD COLUMN {column.name} {kind}"))
    # Before this column, an unchanged listing wrote nothing: the last fetch of the entry's source
    # that worked is the best bound (a later time than the truth, so nothing is pruned too soon).
    conn.execute(
        text(
            "UPDATE entries SET last_seen = COALESCE((SELECT s.last_ok FROM sources s WHERE s.name = entries.source"
            " AND s.last_ok > entries.updated_at), entries.updated_at)"
        )
    )
    for table in (delivery_counts, pruned_entries):
        table.create(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _initial),
    Migration(2, "entry sightings", _sightings),
    Migration(3, "issue entries and held issues", _issue_entries),
    Migration(4, "placeholder tokens per frozen variant", _variant_tokens),
    Migration(5, "first attempt of a delivery; subscriber events", _ledger_events),
    Migration(6, "fetch log", _fetch_log),
    Migration(7, "bounce events and VERP tags", _bounces),
    Migration(8, "web subscribers, confirmations, consents, theme choices, forgotten addresses", _people),
    Migration(9, "which worker holds each batch", lambda conn: batch_holders.create(conn)),
    Migration(10, "approval requests and approvals", _approvals),
    Migration(11, "last seen of entries; compacted ledger counts; pruned entry ids", _prune),
)

# Any fixed number: PostgreSQL advisory locks are keyed by a bigint.
_PG_MIGRATION_LOCK = 0x6469676573740001


def _serialise(conn: Connection) -> None:
    """Make concurrent migrators take turns (SQLite already does: BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})


def applied_numbers(conn: Connection) -> set[int]:
    """Numbers of the migrations already applied (empty for a new database)."""
    if not conn.dialect.has_table(conn, migrations.name):
        return set()
    return set(conn.execute(select(migrations.c.number)).scalars())


def migrate(conn: Connection, now: dt.datetime, steps: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the steps not yet recorded, each in its own transaction; return their numbers.

    ``conn`` must not be in a transaction; on SQLite it must begin its
    transactions with ``BEGIN IMMEDIATE`` so migrators take turns.
    """
    with conn.begin():
        pending = [m for m in steps if m.number not in applied_numbers(conn)]
    done: list[int] = []
    for step in pending:
        with conn.begin():
            _serialise(conn)
            migrations.create(conn, checkfirst=True)
            # Another process may have applied it while we waited for the lock.
            if step.number in applied_numbers(conn):
                continue
            step.apply(conn)
            conn.execute(insert(migrations).values(number=step.number, name=step.name, applied_at=now))
            done.append(step.number)
    return done
