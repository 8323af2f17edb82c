"""The send ledger: one row per (issue, address), so each message goes out once.

A row moves ``pending`` → ``claimed`` → ``sent`` (or ``failed-temporary``,
``failed-permanent``, ``unknown``, ``skipped``). Claiming is one atomic
``UPDATE ... WHERE state IN (...)`` whose row count says who won, so two
threads or two processes never both claim a row; the claim is committed
before the message is handed to the server. A claim left by a run that died
becomes ``unknown``: the server may or may not have taken the message, and
only the operator may choose to resend those.

Rows are keyed by the lowercased address: ``Ada@example.org`` and
``ada@example.org`` are one subscriber (the list files compare addresses the
same way), so re-spelling an address can never plan a second message.
Rows come back with that lowercased address. Every method is safe to call from several threads at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, bindparam, func, or_, select, update

from digest.errors import StoreError
from digest.models import Delivery
from digest.store.base import StoreBase, chunked, describe
from digest.store.pruning import is_compacted
from digest.store.schema import UtcDateTime, utc_text
from digest.store.schema import deliveries as t_deliveries

_IN_CHUNK = 500
STALE_CLAIM_ERROR = (
    "in doubt: the process stopped while sending (its claim was left; the server may or may not have taken it)"
)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One ledger row."""

    issue_key: str
    email: str
    variant: str
    state: Delivery
    attempts: int
    next_attempt: dt.datetime | None
    last_code: int | None
    last_error: str | None
    first_attempt: dt.datetime | None = None


def _row(r: Row[Any]) -> DeliveryRow:
    return DeliveryRow(
        issue_key=r.issue_key,
        email=r.email,
        variant=r.variant,
        state=Delivery(r.state),
        attempts=r.attempts,
        next_attempt=r.next_attempt,
        last_code=r.last_code,
        last_error=r.last_error,
        first_attempt=r.first_attempt,
    )


def _due(now: dt.datetime, include_unknown: bool) -> ColumnElement[bool]:
    """Rows a run may (re)send now."""
    c = t_deliveries.c
    states = [Delivery.PENDING.value] + ([Delivery.UNKNOWN.value] if include_unknown else [])
    retry = and_(
        c.state == Delivery.FAILED_TEMPORARY.value,
        or_(c.next_attempt.is_(None), c.next_attempt <= now),
    )
    return or_(c.state.in_(states), retry)


def _due_bound(include_unknown: bool) -> ColumnElement[bool]:
    """``_due`` with the time as a bound parameter, for prebuilt statements.

    The states are literal (one statement per choice): an expanding IN
    parameter is re-rendered on every execution.
    """
    c = t_deliveries.c
    retry = and_(
        c.state == Delivery.FAILED_TEMPORARY.value,
        or_(c.next_attempt.is_(None), c.next_attempt <= bindparam("b_now")),
    )
    return or_(c.state.in_(_states(include_unknown)), retry)


def _states(include_unknown: bool) -> list[str]:
    return [Delivery.PENDING.value] + ([Delivery.UNKNOWN.value] if include_unknown else [])


# The hot path runs these once or twice per message: built once, so each call only binds values
# (building the expression trees anew cost more than the UPDATE itself).
_c = t_deliveries.c
_CLAIMED: dict[str, Any] = {
    "state": Delivery.CLAIMED.value,
    "attempts": _c.attempts + 1,
    "updated_at": bindparam("b_now"),
    "first_attempt": func.coalesce(_c.first_attempt, bindparam("b_now", type_=UtcDateTime)),
}
_CLAIM = {
    unknown: update(t_deliveries)
    .where(_c.issue_key == bindparam("b_key"), _c.email == bindparam("b_email"), _due_bound(unknown))
    .values(**_CLAIMED)
    for unknown in (False, True)
}
_CLAIM_MANY = {
    unknown: update(t_deliveries)
    .where(_c.issue_key == bindparam("b_key"), _c.email.in_(bindparam("b_emails", expanding=True)), _due_bound(unknown))
    .values(**_CLAIMED)
    .returning(_c.email)
    for unknown in (False, True)
}
_SENT_VALUES: dict[str, Any] = {
    "state": Delivery.SENT.value,
    "next_attempt": None,
    "last_error": None,
    "updated_at": bindparam("b_now"),
}
_MARK_SENT = (
    update(t_deliveries)
    .where(_c.issue_key == bindparam("b_key"), _c.email == bindparam("b_email"))
    .values(**_SENT_VALUES)
)
_MARK_SENT_MANY = (
    update(t_deliveries)
    .where(_c.issue_key == bindparam("b_key"), _c.email.in_(bindparam("b_emails", expanding=True)))
    .values(**_SENT_VALUES)
)


def _key(email: str) -> str:
    """The ledger's spelling of an address."""
    return email.lower()


def _one(issue_key: str, email: str) -> ColumnElement[bool]:
    return and_(t_deliveries.c.issue_key == issue_key, t_deliveries.c.email == _key(email))


class LedgerMixin(StoreBase):
    """Planning, claiming and recording deliveries."""

    def plan_deliveries(self, issue_key: str, rows: Iterable[tuple[str, str]], now: dt.datetime) -> int:
        """Add a ``pending`` row for each ``(email, variant)`` not in the ledger yet.

        Existing rows are left alone, whatever their state; a repeated address
        keeps its first variant. Returns how many rows were added.
        """
        stamp = utc_text(now)
        pending = Delivery.PENDING.value
        count = select(func.count()).select_from(t_deliveries).where(t_deliveries.c.issue_key == issue_key)
        with self._write() as conn:
            if is_compacted(conn, issue_key):
                return 0  # its ledger was compacted by `digest prune`: planning it again would send it twice
            before = int(conn.execute(count).scalar_one())
            # A million rows: plain tuples through the driver, streamed, in this transaction (SQLAlchemy's
            # per-row dicts and type processing cost more than the inserts). DO NOTHING keeps existing
            # rows and a repeated address's first variant, and lets another process on PostgreSQL plan
            # the same rows concurrently.
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            sql = (
                "INSERT INTO deliveries (issue_key, email, variant, state, attempts, updated_at)"
                f" VALUES ({', '.join([mark] * 6)}) ON CONFLICT (issue_key, email) DO NOTHING"
            )
            values = ((issue_key, _key(email), variant, pending, 0, stamp) for email, variant in rows)
            driver: Any = conn.connection.driver_connection  # its executemany takes an iterator
            cursor = driver.cursor()
            try:
                cursor.executemany(sql, values)
            except conn.dialect.loaded_dbapi.Error as exc:
                raise StoreError(describe(self.label, exc, self._busy_timeout)) from exc
            finally:
                cursor.close()
            return int(conn.execute(count).scalar_one()) - before

    def due_deliveries(self, issue_key: str, now: dt.datetime, *, include_unknown: bool = False) -> list[DeliveryRow]:
        """Rows to send now: pending, failed-temporary whose ``next_attempt`` has come,
        and unknown ones when ``include_unknown``. Ordered by address."""
        c = t_deliveries.c
        query = select(t_deliveries).where(c.issue_key == issue_key, _due(now, include_unknown))
        with self._read() as conn:
            return [_row(r) for r in conn.execute(query.order_by(c.email))]

    def claim(self, issue_key: str, email: str, now: dt.datetime, *, include_unknown: bool = False) -> bool:
        """Atomically take a due row for sending (attempts + 1); committed on return.

        False if the row is missing, done, claimed by another run, or not due yet.
        ``unknown`` rows are claimable only with ``include_unknown``.
        """
        params = {"b_key": issue_key, "b_email": _key(email), "b_now": now}
        with self._write() as conn:
            return conn.execute(_CLAIM[include_unknown], params).rowcount == 1

    def claim_many(
        self, issue_key: str, emails: Iterable[str], now: dt.datetime, *, include_unknown: bool = False
    ) -> list[str]:
        """``claim`` for many rows at once; returns the addresses claimed, in the given order."""
        wanted = list(dict.fromkeys(emails))
        keys = list(dict.fromkeys(_key(e) for e in wanted))
        won: set[str] = set()
        with self._write() as conn:
            for batch in chunked(keys, _IN_CHUNK):
                params = {"b_key": issue_key, "b_emails": list(batch), "b_now": now}
                won.update(conn.execute(_CLAIM_MANY[include_unknown], params).scalars())
        # One spelling per row: a second spelling of a claimed address is not claimed again.
        out = []
        for e in wanted:
            if _key(e) in won:
                won.discard(_key(e))
                out.append(e)
        return out

    def _not_planned(self, issue_key: str, email: str) -> StoreError:
        return StoreError(f"database {self.label}: no delivery of issue {issue_key} to {email} is planned")

    def _mark(self, conn: Connection, issue_key: str, email: str, values: dict[str, Any]) -> None:
        # A row proven sent stays sent: a late failure report must not undo it.
        stmt = (
            update(t_deliveries)
            .where(_one(issue_key, email), t_deliveries.c.state != Delivery.SENT.value)
            .values(**values)
        )
        if conn.execute(stmt).rowcount == 0:
            exists = conn.execute(select(t_deliveries.c.state).where(_one(issue_key, email))).first()
            if exists is None:
                raise self._not_planned(issue_key, email)

    def mark_sent(self, issue_key: str, email: str, now: dt.datetime) -> None:
        """The server accepted the message."""
        utc_text(now)
        with self._write() as conn:
            if conn.execute(_MARK_SENT, {"b_key": issue_key, "b_email": _key(email), "b_now": now}).rowcount == 0:
                raise self._not_planned(issue_key, email)

    def mark_sent_many(self, issue_key: str, emails: Iterable[str], now: dt.datetime) -> int:
        """``mark_sent`` for many rows in one transaction; returns how many rows were updated."""
        utc_text(now)
        done = 0
        with self._write() as conn:
            for batch in chunked(list(dict.fromkeys(_key(e) for e in emails)), _IN_CHUNK):
                done += conn.execute(
                    _MARK_SENT_MANY, {"b_key": issue_key, "b_emails": list(batch), "b_now": now}
                ).rowcount
        return done

    def mark_failed(
        self,
        issue_key: str,
        email: str,
        now: dt.datetime,
        *,
        permanent: bool,
        code: int | None,
        error: str,
        next_attempt: dt.datetime | None,
    ) -> None:
        """The server refused the message; a temporary failure is due again at ``next_attempt``."""
        utc_text(now)
        state = Delivery.FAILED_PERMANENT if permanent else Delivery.FAILED_TEMPORARY
        values = {
            "state": state.value,
            "last_code": code,
            "last_error": error,
            "next_attempt": None if permanent else next_attempt,
            "updated_at": now,
        }
        with self._write() as conn:
            self._mark(conn, issue_key, email, values)

    def mark_unknown(self, issue_key: str, email: str, now: dt.datetime, error: str) -> None:
        """The connection broke after the message was handed over: it may have gone out."""
        utc_text(now)
        values = {"state": Delivery.UNKNOWN.value, "last_error": error, "updated_at": now}
        with self._write() as conn:
            self._mark(conn, issue_key, email, values)

    def mark_skipped(self, issue_key: str, email: str, now: dt.datetime, reason: str) -> None:
        """Not sent on purpose (e.g. the address unsubscribed during the run)."""
        utc_text(now)
        values = {"state": Delivery.SKIPPED.value, "last_error": reason, "updated_at": now}
        with self._write() as conn:
            self._mark(conn, issue_key, email, values)

    def unfinished_issues(self, now: dt.datetime) -> list[str]:
        """Issues with rows still to send now (pending, or temporary failures that are due), oldest first."""
        c = t_deliveries.c
        query = select(c.issue_key).where(_due(now, False)).group_by(c.issue_key).order_by(c.issue_key)
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def delivery_counts(self, issue_key: str) -> dict[Delivery, int]:
        """How many rows of the issue are in each state (every state is present, maybe 0)."""
        c = t_deliveries.c
        query = select(c.state, func.count()).where(c.issue_key == issue_key).group_by(c.state)
        counts = dict.fromkeys(Delivery, 0)
        with self._read() as conn:
            for state, n in conn.execute(query):
                counts[Delivery(state)] = int(n)
        return counts

    def deliveries(self, issue_key: str, state: Delivery | None = None) -> list[DeliveryRow]:
        """The issue's rows, optionally in one state, ordered by address."""
        c = t_deliveries.c
        query = select(t_deliveries).where(c.issue_key == issue_key)
        if state is not None:
            query = query.where(c.state == state.value)
        with self._read() as conn:
            return [_row(r) for r in conn.execute(query.order_by(c.email))]

    # -- batches (``digest worker``): the same rows, taken a given list at a time --------------

    def due_among(
        self, issue_key: str, emails: Iterable[str], now: dt.datetime, *, include_unknown: bool = False
    ) -> list[DeliveryRow]:
        """``due_deliveries`` restricted to ``emails`` (a batch), ordered by address."""
        c = t_deliveries.c
        out: list[DeliveryRow] = []
        with self._read() as conn:
            for batch in chunked(sorted({_key(e) for e in emails}), _IN_CHUNK):
                query = select(t_deliveries).where(
                    c.issue_key == issue_key, c.email.in_(list(batch)), _due(now, include_unknown)
                )
                out.extend(_row(r) for r in conn.execute(query))
        return sorted(out, key=lambda r: r.email)

    def release_claims_among(self, issue_key: str, emails: Iterable[str], now: dt.datetime) -> list[str]:
        """``release_stale_claims`` for the rows of ``emails`` only; returns their addresses.

        For the batch of a worker that stopped heartbeating: no live process holds those claims.
        """
        c = t_deliveries.c
        done: list[str] = []
        with self._write() as conn:
            for batch in chunked(sorted({_key(e) for e in emails}), _IN_CHUNK):
                mine = and_(c.issue_key == issue_key, c.email.in_(list(batch)), c.state == Delivery.CLAIMED.value)
                done.extend(conn.execute(select(c.email).where(mine)).scalars())
                conn.execute(
                    update(t_deliveries)
                    .where(mine)
                    .values(state=Delivery.UNKNOWN.value, last_error=STALE_CLAIM_ERROR, updated_at=now)
                )
        return done
