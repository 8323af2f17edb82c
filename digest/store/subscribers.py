"""Subscribers' status: who is active, unsubscribed or bounced.

The subscriber lists are files the editor keeps; the store only keeps each
address's status, keyed by the lowercased address. Unsubscribing always
wins: a list import or a re-subscribe cannot silently re-activate an
address that asked to leave; only ``force=True`` can, and ``reactivate``
(an operator's ``digest subscribers reactivate``) does so on the record:
every change of status is also appended to ``subscriber_events`` with its
time and reason, and that log is never rewritten. Every unsubscribe and complaint also appends a consent record
(``people``); its owner confirming a new web sign-up (``people.confirm``) may re-activate it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select

from digest.models import SubscriberStatus
from digest.store.base import StoreBase, chunked, upsert_into
from digest.store.schema import consents as t_consents
from digest.store.schema import subscriber_events as t_events
from digest.store.schema import subscriber_status as t_status
from digest.store.schema import utc_text


def normalise(email: str) -> str:
    """The key an address is stored under."""
    return email.strip().lower()


_LEAVING = {SubscriberStatus.UNSUBSCRIBED: "unsubscribe", SubscriberStatus.COMPLAINED: "complaint"}


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """An address's stored status, since when, and what set it."""

    email: str
    status: SubscriberStatus
    since: dt.datetime
    how: str


@dataclass(frozen=True, slots=True)
class SubscriberEvent:
    """One entry of an address's status history."""

    email: str
    event: str
    at: dt.datetime
    reason: str


class SubscribersMixin(StoreBase):
    """Status per subscriber address."""

    def subscriber_status(self, emails: Iterable[str] | None = None) -> dict[str, SubscriberStatus]:
        """Stored statuses (of ``emails`` only, when given), keyed by lowercased address.

        Addresses without a stored status are absent from the result.
        """
        c = t_status.c
        out: dict[str, SubscriberStatus] = {}
        with self._read() as conn:
            if emails is None:
                for email, status in conn.execute(select(c.email, c.status)):
                    out[email] = SubscriberStatus(status)
                return out
            for batch in chunked(sorted({normalise(e) for e in emails}), 500):
                for email, status in conn.execute(select(c.email, c.status).where(c.email.in_(batch))):
                    out[email] = SubscriberStatus(status)
        return out

    def inactive_statuses(self) -> dict[str, SubscriberStatus]:
        """``subscriber_status()`` without the active ones (chosen by the database, not read and dropped)."""
        c = t_status.c
        with self._read() as conn:
            rows = conn.execute(select(c.email, c.status).where(c.status != SubscriberStatus.ACTIVE.value))
            return {email: SubscriberStatus(status) for email, status in rows}

    def status_mark(self) -> int:
        """Where the status history ends now: ``status_changes`` after it gives what changed since."""
        with self._read() as conn:
            return int(conn.execute(select(func.coalesce(func.max(t_events.c.id), 0))).scalar_one())

    def status_changes(self, mark: int) -> tuple[int, set[str]]:
        """The addresses whose status changed after ``mark`` (from ``status_mark``), and the new mark.

        One indexed read of the history's tail: a send asks every few messages.
        """
        c = t_events.c
        with self._read() as conn:
            rows = conn.execute(select(c.id, c.email).where(c.id > mark)).all()
        return max((int(i) for i, _ in rows), default=mark), {e for _, e in rows}

    def set_status(
        self, email: str, status: SubscriberStatus, now: dt.datetime, how: str, *, force: bool = False
    ) -> bool:
        """Record ``status`` for ``email``; True if the stored status changed.

        ``how`` says what caused it (``"link"``, ``"cli"``, ``"bounce"``...).
        An unsubscribed address stays unsubscribed unless ``force`` is true.
        """
        utc_text(now)
        key = normalise(email)
        with self._write() as conn:
            current = conn.execute(select(t_status.c.status).where(t_status.c.email == key)).scalar()
            if current == status.value:
                return False
            # Leaving always wins: only an explicit re-activation (force) undoes an unsubscribe or a complaint.
            if current in (SubscriberStatus.UNSUBSCRIBED.value, SubscriberStatus.COMPLAINED.value) and not force:
                return False
            stmt = upsert_into(conn, t_status).values(email=key, status=status.value, changed_at=now, how=how)
            stmt = stmt.on_conflict_do_update(
                index_elements=[t_status.c.email],
                set_={k: stmt.excluded[k] for k in ("status", "changed_at", "how")},
            )
            conn.execute(stmt)
            self._event(conn, key, status.value, now, how)
            if status in _LEAVING:
                # Leaving is a consent record too (append-only, see store.people), whatever caused it.
                detail = json.dumps({"how": how}, ensure_ascii=False)
                record = {"email": key, "kind": _LEAVING[status], "at": now, "text_sha256": "", "detail": detail}
                conn.execute(insert(t_consents).values(**record))
        return True

    def _event(self, conn: Connection, email: str, event: str, now: dt.datetime, reason: str) -> None:
        conn.execute(insert(t_events).values(email=email, event=event, at=now, reason=reason))

    def status_record(self, email: str) -> StatusRecord | None:
        """The stored status of ``email`` with its time and cause; None if none is stored."""
        c = t_status.c
        with self._read() as conn:
            row = conn.execute(select(t_status).where(c.email == normalise(email))).first()
        if row is None:
            return None
        return StatusRecord(row.email, SubscriberStatus(row.status), row.changed_at, row.how)

    def reactivate(self, email: str, now: dt.datetime, reason: str) -> StatusRecord | None:
        """Make an unsubscribed or bounced address active again, recording ``reason``.

        Returns the record it had (None, changing nothing, when it was not
        unsubscribed or bounced).
        """
        utc_text(now)
        key = normalise(email)
        c = t_status.c
        with self._write() as conn:
            row = conn.execute(select(t_status).where(c.email == key)).first()
            if row is None or row.status == SubscriberStatus.ACTIVE.value:
                return None
            before = StatusRecord(row.email, SubscriberStatus(row.status), row.changed_at, row.how)
            how = f"reactivated: {reason}"
            conn.execute(
                t_status.update()
                .where(c.email == key)
                .values(status=SubscriberStatus.ACTIVE.value, changed_at=now, how=how)
            )
            self._event(conn, key, "reactivated", now, reason)
        return before

    def subscriber_events(self, email: str) -> list[SubscriberEvent]:
        """The status history of ``email``, oldest first."""
        c = t_events.c
        with self._read() as conn:
            rows = conn.execute(select(t_events).where(c.email == normalise(email)).order_by(c.id))
            return [SubscriberEvent(r.email, r.event, r.at, r.reason) for r in rows]

    def unsubscribed(self) -> set[str]:
        """Every address that unsubscribed (lowercased)."""
        c = t_status.c
        with self._read() as conn:
            rows = conn.execute(select(c.email).where(c.status == SubscriberStatus.UNSUBSCRIBED.value))
            return set(rows.scalars())
