"""The store: everything digest remembers between runs, in one SQL database.

It owns the entries gathered from sources and each source's fetch state, the
frozen issues, the send ledger, subscribers' status and the run lock. It uses
SQLAlchemy Core on SQLite (a file, WAL) by default, and the same code runs on
PostgreSQL (``postgresql+psycopg://...``). Opening a store creates and
migrates its tables. Database failures surface as ``StoreError``.

    with Store.open("sqlite:////srv/digest/digest.db") as store:
        counts = store.record_fetch(result, now)

The parts live in ``entries``, ``issues``, ``carried``, ``ledger`` (and ``due``, ``claims``),
``subscribers``, ``lock``, ``holders``, ``approvals`` and ``pruning``; ``schema`` holds the tables and
the migrations.
"""

from __future__ import annotations

import datetime as dt
from types import TracebackType

from digest.store.approvals import Approval, ApprovalRequest, ApprovalsMixin
from digest.store.base import BUSY_TIMEOUT_S, make_engine
from digest.store.bounces import BounceEvent, BouncesMixin
from digest.store.carried import CarriedMixin, ChangedEntry, IssuedEntry
from digest.store.claims import ClaimsMixin
from digest.store.due import DueMixin, RowState
from digest.store.entries import EntriesMixin, FetchCounts, content_hash
from digest.store.fetchlog import FetchLogMixin, FetchRecord, SourceReport
from digest.store.holders import HoldersMixin
from digest.store.issues import FrozenIssue, IssueEntry, IssuesMixin
from digest.store.ledger import STALE_CLAIM_ERROR, DeliveryRow, LedgerMixin
from digest.store.lock import LockMixin
from digest.store.migrations import MIGRATIONS, Migration, applied_numbers, migrate
from digest.store.people import Consent, PeopleMixin, RateLimits, WebSubscriber, token_hash
from digest.store.pruning import PruneCounts, PruningMixin
from digest.store.reports import IssueReport, IssueSummary, ReportsMixin
from digest.store.requeue import RequeueMixin
from digest.store.subscribers import SubscribersMixin, normalise

__all__ = [
    "BUSY_TIMEOUT_S",
    "MIGRATIONS",
    "STALE_CLAIM_ERROR",
    "Approval",
    "ApprovalRequest",
    "BounceEvent",
    "ChangedEntry",
    "Consent",
    "DeliveryRow",
    "FetchCounts",
    "FetchRecord",
    "FrozenIssue",
    "IssueEntry",
    "IssueReport",
    "IssueSummary",
    "IssuedEntry",
    "Migration",
    "PruneCounts",
    "RateLimits",
    "RowState",
    "SourceReport",
    "Store",
    "WebSubscriber",
    "content_hash",
    "normalise",
    "token_hash",
]


class Store(
    ApprovalsMixin,
    BouncesMixin,
    CarriedMixin,
    ClaimsMixin,
    EntriesMixin,
    FetchLogMixin,
    IssuesMixin,
    LedgerMixin,
    DueMixin,
    PeopleMixin,
    PruningMixin,
    RequeueMixin,
    ReportsMixin,
    SubscribersMixin,
    LockMixin,
    HoldersMixin,
):
    """A connection pool to the database plus the operations digest needs.

    Thread-safe: one ``Store`` may be shared by several threads.
    """

    @classmethod
    def open(
        cls,
        url: str,
        *,
        now: dt.datetime | None = None,
        migrations: tuple[Migration, ...] = MIGRATIONS,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ) -> Store:
        """Connect to ``url``, create or migrate the tables, and return the store.

        ``now`` stamps newly applied migrations (default: the clock, since
        this records when the schema changed rather than pipeline data).
        ``busy_timeout`` is how many seconds a SQLite writer waits for another
        process to finish writing before giving up with ``StoreError``.
        """
        engine, label = make_engine(url, busy_timeout)
        store = cls(engine, label, busy_timeout)
        try:
            # A plain read first, so re-opening an up-to-date database takes no write lock.
            with store._read() as conn:
                pending = {m.number for m in migrations} - applied_numbers(conn)
            if pending:
                with store._connect_for_write() as conn:
                    migrate(conn, now or dt.datetime.now(dt.UTC), migrations)
        except BaseException:
            store.close()
            raise
        return store

    def applied_migrations(self) -> set[int]:
        """The numbers of the migrations this database has had."""
        with self._read() as conn:
            return applied_numbers(conn)

    def close(self) -> None:
        """Close every pooled connection."""
        with self._write_lock:
            self._close_writer()
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.label!r})"
