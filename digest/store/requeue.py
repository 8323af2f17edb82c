"""Ledger rows that come back or end: stale claims, requeues, give-ups.

A claim left by a run that died becomes ``unknown`` (in doubt); an
operator may make rows due again (``--retry-failed``, ``--resend-unknown``);
a row skipped as no longer listed is planned again when its address is
back; a temporary failure first tried ``retry_for`` ago ends as
``failed-permanent``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from sqlalchemy import and_, select, update

from digest.models import Delivery
from digest.store.base import StoreBase, chunked
from digest.store.ledger import _IN_CHUNK, STALE_CLAIM_ERROR, _key
from digest.store.schema import deliveries as t_deliveries


class RequeueMixin(StoreBase):
    """Moving rows back to due, or to their end."""

    def release_stale_claims(self, issue_key: str, now: dt.datetime) -> int:
        """Turn the claims of a run that died into ``unknown``; returns how many.

        Call it only while holding the send lock, so no live run owns a claim.
        """
        stmt = (
            update(t_deliveries)
            .where(t_deliveries.c.issue_key == issue_key, t_deliveries.c.state == Delivery.CLAIMED.value)
            .values(state=Delivery.UNKNOWN.value, last_error=STALE_CLAIM_ERROR, updated_at=now)
        )
        with self._write() as conn:
            return int(conn.execute(stmt).rowcount)

    def requeue_unknown(self, issue_key: str, now: dt.datetime) -> int:
        """Make the issue's ``unknown`` rows pending again; returns how many.

        For an operator who chose to resend messages whose fate is unknown.
        """
        return self.requeue(issue_key, (Delivery.UNKNOWN,), now)

    def replan_skipped(self, issue_key: str, emails: Iterable[str], reason: str, now: dt.datetime) -> int:
        """Make pending again the rows of ``emails`` that were skipped for ``reason``; returns how many."""
        keys = sorted({_key(e) for e in emails})
        c = t_deliveries.c
        done = 0
        with self._write() as conn:
            for batch in chunked(keys, _IN_CHUNK):
                stmt = (
                    update(t_deliveries)
                    .where(
                        c.issue_key == issue_key,
                        c.email.in_(list(batch)),
                        c.state == Delivery.SKIPPED.value,
                        c.last_error == reason,
                    )
                    .values(state=Delivery.PENDING.value, next_attempt=None, last_error=None, updated_at=now)
                )
                done += int(conn.execute(stmt).rowcount)
        return done

    def requeue(self, issue_key: str, states: Iterable[Delivery], now: dt.datetime) -> int:
        """Make the issue's rows in ``states`` pending again (due at once); returns how many.

        For an operator who fixed what made them fail (``digest send --retry-failed``).
        A ``sent`` row is never requeued. Their retries start afresh (``retry_for`` counts from the next try).
        """
        wanted = [d.value for d in states if d is not Delivery.SENT]
        stmt = (
            update(t_deliveries)
            .where(t_deliveries.c.issue_key == issue_key, t_deliveries.c.state.in_(wanted))
            .values(state=Delivery.PENDING.value, next_attempt=None, first_attempt=None, updated_at=now)
        )
        with self._write() as conn:
            return int(conn.execute(stmt).rowcount)

    def give_up(
        self, issue_key: str, retry_for: dt.timedelta, now: dt.datetime, reason: Callable[[int], str]
    ) -> list[str]:
        """Make ``failed-permanent`` the issue's temporary failures first tried ``retry_for`` ago or more.

        ``reason(tries)`` is the error each keeps. Returns their addresses.
        """
        c = t_deliveries.c
        old = and_(
            c.issue_key == issue_key,
            c.state == Delivery.FAILED_TEMPORARY.value,
            c.first_attempt.is_not(None),
            c.first_attempt <= now - retry_for,
        )
        with self._write() as conn:
            rows = list(conn.execute(select(c.email, c.attempts).where(old)))
            for email, tries in rows:
                values = {
                    "state": Delivery.FAILED_PERMANENT.value,
                    "next_attempt": None,
                    "last_error": reason(int(tries)),
                    "updated_at": now,
                }
                conn.execute(update(t_deliveries).where(old, c.email == email).values(**values))
        return [email for email, _ in rows]
