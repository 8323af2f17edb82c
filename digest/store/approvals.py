"""Approvals: issues frozen for an editor's look, and who approved which frozen bytes, when.

An issue waiting for approval has an ``approval_requests`` row: since when
it waits and the fingerprint of the bytes the editors were last sent. An
approval is a row of ``approvals`` for one fingerprint of an issue; the
issue may go out while its current fingerprint has one. Approving the same
bytes twice keeps the first row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, and_, select, update

from digest.store.base import StoreBase, upsert_into
from digest.store.schema import approval_requests as t_requests
from digest.store.schema import approvals as t_approvals


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """An issue waiting (or that waited) for approval; ``fingerprint`` is what the editors were last sent."""

    issue_key: str
    since: dt.datetime
    fingerprint: str
    notified_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Approval:
    """``approved_by`` approved the bytes of ``issue_key`` whose SHA-256 is ``fingerprint`` at ``approved_at``."""

    issue_key: str
    fingerprint: str
    approved_by: str
    approved_at: dt.datetime


class ApprovalsMixin(StoreBase):
    """Record approval requests and approvals, and read them back."""

    def request_approval(self, key: str, fingerprint: str, now: dt.datetime) -> ApprovalRequest:
        """The request of issue ``key``, made now if there is none (an existing one keeps its ``since``)."""
        with self._write() as conn:
            stmt = upsert_into(conn, t_requests).values(issue_key=key, since=now, fingerprint=fingerprint)
            conn.execute(stmt.on_conflict_do_nothing(index_elements=[t_requests.c.issue_key]))
        request = self.approval_request(key)
        assert request is not None
        return request

    def mark_notified(self, key: str, fingerprint: str, now: dt.datetime) -> None:
        """The editors were sent the bytes of issue ``key`` whose fingerprint is ``fingerprint``."""
        with self._write() as conn:
            conn.execute(
                update(t_requests).where(t_requests.c.issue_key == key).values(fingerprint=fingerprint, notified_at=now)
            )

    def approval_request(self, key: str) -> ApprovalRequest | None:
        with self._read() as conn:
            row = conn.execute(select(t_requests).where(t_requests.c.issue_key == key)).first()
        return None if row is None else ApprovalRequest(row.issue_key, row.since, row.fingerprint, row.notified_at)

    def approve(self, key: str, fingerprint: str, by: str, now: dt.datetime) -> tuple[Approval, bool]:
        """Record that ``by`` approved these bytes of ``key``; the approval, and False if it was approved already."""
        with self._write() as conn:
            stmt = upsert_into(conn, t_approvals).values(
                issue_key=key, fingerprint=fingerprint, approved_by=by, approved_at=now
            )
            added = stmt.on_conflict_do_nothing(
                index_elements=[t_approvals.c.issue_key, t_approvals.c.fingerprint]
            ).returning(t_approvals.c.issue_key)
            # RETURNING, not rowcount: psycopg reports -1 for this statement.
            fresh = conn.execute(added).first() is not None
        approval = self.approval(key, fingerprint)
        assert approval is not None
        return approval, fresh

    def approval(self, key: str, fingerprint: str) -> Approval | None:
        """The approval of exactly these bytes of ``key``, if any."""
        c = t_approvals.c
        with self._read() as conn:
            row = conn.execute(select(t_approvals).where(c.issue_key == key, c.fingerprint == fingerprint)).first()
        return None if row is None else Approval(row.issue_key, row.fingerprint, row.approved_by, row.approved_at)

    def awaiting_approval(self) -> dict[str, dt.datetime]:
        """``issue key → since`` of every issue whose last-sent fingerprint has no approval, oldest key first."""
        with self._read() as conn:
            return awaiting(conn)


def awaiting(conn: Connection) -> dict[str, dt.datetime]:
    """``issue key → since`` of the issues waiting for approval (``digest issues`` reads it too)."""
    r, a = t_requests.c, t_approvals.c
    joined = t_requests.outerjoin(t_approvals, and_(a.issue_key == r.issue_key, a.fingerprint == r.fingerprint))
    query = select(r.issue_key, r.since).select_from(joined).where(a.issue_key.is_(None)).order_by(r.issue_key)
    return {key: since for key, since in conn.execute(query)}
