"""Bounce events and VERP tags: what the bounce mailbox said about whom.

Events are append-only and unique per (mailbox message, address), so
scanning the same message twice records it once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select

from digest.store.base import StoreBase, chunked, upsert_into
from digest.store.schema import bounce_events as t_events
from digest.store.schema import deliveries as t_deliveries
from digest.store.schema import verp_tags as t_tags
from digest.store.subscribers import normalise


@dataclass(frozen=True, slots=True)
class BounceEvent:
    """One event of one address."""

    email: str
    issue_key: str
    verdict: str
    status: str
    detail: str
    at: dt.datetime


class BouncesMixin(StoreBase):
    """Bounce events, VERP tags, and the ledger lookups that identify a bounce."""

    def record_verp_tags(self, issue_key: str, tags: Iterable[tuple[str, str]]) -> None:
        """Remember ``(email, tag)`` pairs of an issue (the same tag again is a no-op)."""
        rows = [{"tag": tag, "issue_key": issue_key, "email": normalise(email)} for email, tag in tags]
        with self._write() as conn:
            for batch in chunked(rows, 2000):
                conn.execute(
                    upsert_into(conn, t_tags).on_conflict_do_nothing(index_elements=[t_tags.c.tag]), list(batch)
                )

    def verp_lookup(self, tag: str) -> tuple[str, str] | None:
        """``(issue_key, email)`` of a VERP tag, or None."""
        with self._read() as conn:
            row = conn.execute(select(t_tags.c.issue_key, t_tags.c.email).where(t_tags.c.tag == tag)).first()
        return (row[0], row[1]) if row else None

    def ledger_has(self, issue_key: str, email: str) -> bool:
        """Whether ``email`` has a ledger row for ``issue_key`` (only those bounces are acted on)."""
        c = t_deliveries.c
        with self._read() as conn:
            q = select(c.email).where(c.issue_key == issue_key, c.email == normalise(email))
            return conn.execute(q).first() is not None

    def ledger_issues_of(self, email: str) -> list[str]:
        """Issue keys ``email`` has ledger rows for, newest key first."""
        c = t_deliveries.c
        with self._read() as conn:
            keys = conn.execute(select(c.issue_key).where(c.email == normalise(email))).scalars().all()
        return sorted(set(keys), reverse=True)

    def ledger_emails(self, issue_key: str) -> list[str]:
        """Every address with a ledger row for ``issue_key``."""
        c = t_deliveries.c
        with self._read() as conn:
            return list(conn.execute(select(c.email).where(c.issue_key == issue_key)).scalars())

    def record_bounce(self, report: str, event: BounceEvent) -> bool:
        """Append ``event`` from mailbox message ``report``; False if that message already said it."""
        values = {
            "report": report,
            "email": normalise(event.email),
            "issue_key": event.issue_key,
            "verdict": event.verdict,
            "status": event.status,
            "detail": event.detail[:1000],
            "at": event.at,
        }
        with self._write() as conn:
            stmt = (
                upsert_into(conn, t_events)
                .values(**values)
                .on_conflict_do_nothing(index_elements=[t_events.c.report, t_events.c.email])
            )
            return bool(conn.execute(stmt).rowcount)

    def bounce_events(self, email: str | None = None) -> list[BounceEvent]:
        """Events, of one address or all, oldest first."""
        c = t_events.c
        q = select(c.email, c.issue_key, c.verdict, c.status, c.detail, c.at).order_by(c.at, c.id)
        if email is not None:
            q = q.where(c.email == normalise(email))
        with self._read() as conn:
            return [BounceEvent(*row) for row in conn.execute(q)]

    def reset_bounces(self, email: str) -> int:
        """Forget the bounce events of ``email``; how many were removed."""
        with self._write() as conn:
            return int(conn.execute(delete(t_events).where(t_events.c.email == normalise(email))).rowcount)
