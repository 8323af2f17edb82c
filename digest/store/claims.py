"""The sender's hot path in the ledger: claim the next row, with the previous ones' ``sent`` marks.

Each SMTP connection asks for one commit per message: "record these rows
sent, and claim this one". When several connections ask at once, their
requests ride in one transaction (group commit): the first connection to
take the commit turn commits every request waiting by then, and each one
returns as soon as the commit that carries its claim is done. A claim is
still committed before its message's DATA, and a connection still holds at
most one claimed row (its marks ride with its next claim), so a crash
leaves at most one row per connection in doubt.

The statements are plain DB-API SQL, prepared once per dialect: this runs
once per message, where SQLAlchemy's expression and transaction machinery
cost more than the UPDATE itself. They mean exactly what ``ledger.py``'s
expressions for ``claim`` and ``mark_sent`` mean (the tests run both on
SQLite and PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from digest.errors import StoreError
from digest.models import Delivery
from digest.store.base import StoreBase
from digest.store.schema import utc_text

_D = Delivery
_DUE = "(state IN ({states}) OR (state = '{retry}' AND (next_attempt IS NULL OR next_attempt <= ?)))"
_CLAIM_SQL = (
    f"UPDATE deliveries SET state = '{_D.CLAIMED.value}', attempts = attempts + 1, updated_at = ?, "
    "first_attempt = COALESCE(first_attempt, ?) WHERE issue_key = ? AND email = ? AND " + _DUE
)
_SENT_SQL = (
    f"UPDATE deliveries SET state = '{_D.SENT.value}', next_attempt = NULL, last_error = NULL, "
    "updated_at = ? WHERE issue_key = ? AND email = ?"
)


def _claim_sql(include_unknown: bool) -> str:
    states = [_D.PENDING.value] + ([_D.UNKNOWN.value] if include_unknown else [])
    return _CLAIM_SQL.format(states=", ".join(f"'{s}'" for s in states), retry=_D.FAILED_TEMPORARY.value)


@dataclass(slots=True, eq=False)
class _Request:
    """One connection's ask: mark ``sent`` rows sent, then claim ``email``."""

    issue_key: str
    email: str
    now: str
    sent: list[str]
    include_unknown: bool
    won: bool = False
    done: bool = False
    error: BaseException | None = field(default=None)


class ClaimsMixin(StoreBase):
    """``claim_next``: the one ledger write per message, group-committed across threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._claims_waiting: list[_Request] = []
        self._claims_mutex = threading.Lock()  # guards the waiting list only
        self._claims_turn = threading.Lock()  # one committer at a time
        qmark = self._engine.dialect.paramstyle == "qmark"
        self._claims_sql = {
            unknown: (_claim_sql(unknown) if qmark else _claim_sql(unknown).replace("?", "%s"))
            for unknown in (False, True)
        }
        self._sent_sql = _SENT_SQL if qmark else _SENT_SQL.replace("?", "%s")

    def claim_next(
        self,
        issue_key: str,
        email: str,
        now: dt.datetime,
        *,
        sent: Iterable[str] = (),
        include_unknown: bool = False,
    ) -> bool:
        """Record ``sent`` rows as sent and ``claim`` the next row; both committed on return.

        The sender's hot path: one commit per message (shared with the
        other connections asking at the same time), and each ``sent`` mark
        is committed no later than the next claim. A failed claim still
        commits the marks that came with it.
        """
        request = _Request(
            issue_key, email.lower(), utc_text(now), list(dict.fromkeys(e.lower() for e in sent)), include_unknown
        )
        with self._claims_mutex:
            self._claims_waiting.append(request)
        with self._claims_turn:
            if not request.done:  # nobody committed it while this thread waited for its turn
                with self._claims_mutex:
                    batch, self._claims_waiting = self._claims_waiting, []
                self._commit_claims(batch)
        if request.error is not None:
            raise request.error
        return request.won

    def _commit_claims(self, batch: list[_Request]) -> None:
        """One transaction for every request of ``batch``; each learns its outcome or the error."""
        try:
            with self._connect_for_write() as conn, self._raw_transaction(conn) as cur:
                marks = [(r.now, r.issue_key, e) for r in batch for e in r.sent]
                if marks:
                    cur.executemany(self._sent_sql, marks)
                # In key order: two processes' batches then take their row locks in the same order
                # on PostgreSQL, and can never deadlock on each other.
                for r in sorted(batch, key=lambda r: (r.issue_key, r.email)):
                    cur.execute(self._claims_sql[r.include_unknown], (r.now, r.now, r.issue_key, r.email, r.now))
                    r.won = cur.rowcount == 1
        except BaseException as exc:
            for r in batch:
                r.won = False
                r.error = _own_copy(exc)
        finally:
            for r in batch:
                r.done = True


def _own_copy(exc: BaseException) -> BaseException:
    """The error for one waiting thread: each raises its own object (a traceback belongs to one raise)."""
    if not isinstance(exc, StoreError):
        return exc
    copy = StoreError(str(exc))
    copy.__cause__ = exc.__cause__
    return copy
