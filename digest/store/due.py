"""The send's reads of the ledger at scale: the due rows a page at a time, their count, each row's state.

A send to a million subscribers must not hold a million row objects, nor
one read transaction for as long as it sends (SQLite could not checkpoint
its WAL behind it): ``iter_due`` reads the rows ``due_deliveries`` gives, a
page at a time in address order, each page its own short read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import NamedTuple

from sqlalchemy import and_, func, or_, select

from digest.models import Delivery
from digest.store.base import StoreBase
from digest.store.ledger import _due
from digest.store.schema import deliveries as t_deliveries

#: Rows per read of ``iter_due``.
_PAGE = 5000


class RowState(NamedTuple):
    """One ledger row's address, state and last error (a tuple: a million of them are read at once)."""

    email: str
    state: Delivery
    last_error: str | None


class DueMixin(StoreBase):
    """The due rows of an issue for a send, streamed; their count; the rows' states for planning."""

    def due_count(self, issue_key: str, now: dt.datetime, *, include_unknown: bool = False) -> int:
        """How many rows ``due_deliveries`` would return."""
        c = t_deliveries.c
        query = select(func.count()).select_from(t_deliveries)
        with self._read() as conn:
            return int(conn.execute(query.where(c.issue_key == issue_key, _due(now, include_unknown))).scalar_one())

    def iter_due(
        self,
        issue_key: str,
        now: dt.datetime,
        *,
        last: str = "",
        include_unknown: bool = False,
        page: int = _PAGE,
    ) -> Iterator[tuple[str, str]]:
        """``(email, variant)`` of the rows ``due_deliveries`` returns, read a page at a time as they are taken.

        For a send of a million rows: no row objects, no list, and no read
        transaction held open while the send writes (each page is its own
        short read, the next one starting after the last address). Rows
        whose ``last_error`` contains ``last`` (when given) come after all
        the others, each part in address order; they are read when the
        iteration starts. A row this send has not reached yet is one the
        send has not changed, so the pages give what one read at the start
        would have given.
        """
        c = t_deliveries.c
        due = and_(c.issue_key == issue_key, _due(now, include_unknown))
        later: list[tuple[str, str]] = []
        if last:
            marked = c.last_error.contains(last, autoescape=True)
            with self._read() as conn:
                query = select(c.email, c.variant).where(due, marked).order_by(c.email)
                later = [(e, v) for e, v in conn.execute(query)]
            due = and_(due, or_(c.last_error.is_(None), ~marked))
        pages = select(c.email, c.variant).where(due).order_by(c.email).limit(page)
        after: str | None = None
        while True:
            with self._read() as conn:
                rows = [(e, v) for e, v in conn.execute(pages if after is None else pages.where(c.email > after))]
            yield from rows
            if len(rows) < page:
                break
            after = rows[-1][0]
        yield from later

    def ledger_states(self, issue_key: str) -> list[RowState]:
        """Each row's address, state and last error (no other column): what planning a re-run reads."""
        c = t_deliveries.c
        query = select(c.email, c.state, c.last_error).where(c.issue_key == issue_key).order_by(c.email)
        with self._read() as conn:
            return [RowState(e, Delivery(st), err) for e, st, err in conn.execute(query)]
