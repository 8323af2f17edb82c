"""The sender's hot path in the ledger: claim the next row, with the previous ones' ``sent`` marks.

Each SMTP connection asks for one commit per message: "record these rows
sent, and claim this one". When several connections ask at once, their
requests ride in one statement (group commit): the first connection to
take the commit turn commits every request waiting by then, and each one
returns as soon as the commit that carries its claim is done. A claim is
still committed before its message's DATA, and a connection still holds at
most one claimed row (its marks ride with its next claim), so a crash
leaves at most one row per connection in doubt.

The statement is plain DB-API SQL (``_batch_sql``): this runs once per
message, where SQLAlchemy's expression and transaction machinery cost more
than the UPDATE itself. It means exactly what ``ledger.py``'s ``claim``
and ``mark_sent`` mean (the tests compare them on SQLite and PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from digest.errors import StoreError
from digest.models import Delivery
from digest.store.base import StoreBase
from digest.store.schema import utc_text

_D = Delivery


@functools.lru_cache(maxsize=256)
def _batch_sql(claims: int, marks: int, include_unknown: bool, qmark: bool = True) -> str:
    """One UPDATE that marks ``marks`` rows sent and claims ``claims`` due rows, returning the rows it changed.

    One statement, so on SQLite it is one implicit transaction that takes the
    write lock before it reads (like ``BEGIN IMMEDIATE``) and commits when
    its last row is returned: one call into the database per message rather
    than four (BEGIN, two UPDATEs, COMMIT), each of which gave up Python's
    lock and waited to take it back from the other connections' threads.
    Rows are found by the primary key (``issue_key``, ``email IN``). With
    ``qmark`` the placeholders are SQLite's ``?``, else psycopg's ``%s``; each
    shape of batch is built once (cached), not per message.
    """
    every = ", ".join("?" * (claims + marks))
    states = ", ".join(f"'{s}'" for s in [_D.PENDING.value] + ([_D.UNKNOWN.value] if include_unknown else []))
    retry = f"(state = '{_D.FAILED_TEMPORARY.value}' AND (next_attempt IS NULL OR next_attempt <= ?))"
    due = f"(state IN ({states}) OR {retry})"
    if marks:
        due = f"({due} OR email IN ({', '.join('?' * marks)}))"
    claimed = f"email IN ({', '.join('?' * claims)})" if claims else "1 = 0"  # only marks: claims nothing
    sql = (
        "UPDATE deliveries SET "
        f"state = CASE WHEN {claimed} THEN '{_D.CLAIMED.value}' ELSE '{_D.SENT.value}' END, "
        f"attempts = CASE WHEN {claimed} THEN attempts + 1 ELSE attempts END, "
        f"first_attempt = CASE WHEN {claimed} THEN COALESCE(first_attempt, ?) ELSE first_attempt END, "
        f"next_attempt = CASE WHEN {claimed} THEN next_attempt ELSE NULL END, "
        f"last_error = CASE WHEN {claimed} THEN last_error ELSE NULL END, "
        f"updated_at = ? WHERE issue_key = ? AND email IN ({every}) AND {due} RETURNING email, state"
    )
    return sql if qmark else sql.replace("?", "%s")  # psycopg's placeholders


def _batch_params(now: str, key: str, claims: list[str], marks: list[str]) -> list[str]:
    """The parameters of ``_batch_sql``, in the order its placeholders appear."""
    return [*claims, *claims, *claims, now, *claims, *claims, now, key, *claims, *marks, now, *marks]


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
        self._qmark = self._engine.dialect.paramstyle == "qmark"

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
        """One statement for each issue's requests in ``batch``; each request learns its outcome or the error."""
        groups: dict[tuple[str, bool], list[_Request]] = {}
        for r in batch:
            groups.setdefault((r.issue_key, r.include_unknown), []).append(r)
        try:
            with self._connect_for_write() as conn, self._raw(conn) as (raw, cur):
                for (key, unknown), requests in groups.items():
                    marks = sorted({e for r in requests for e in r.sent})
                    claimers: dict[str, _Request] = {}
                    for r in requests:
                        # A row another request marks sent, or one claimed twice in the batch: its
                        # claimer (or the first of them) has it; the others lose, as they would one by one.
                        if r.email not in marks and r.email not in claimers:
                            claimers[r.email] = r
                    claims = list(claimers)
                    sql = _batch_sql(len(claims), len(marks), unknown, self._qmark)
                    params = _batch_params(
                        max(r.now for r in requests), key, claims, marks
                    )  # the latest: the commit comes after each
                    cur.execute(sql, params)
                    won = {email for email, state in cur.fetchall() if state == _D.CLAIMED.value}
                    if not self._is_sqlite:
                        raw.commit()  # SQLite committed the statement itself
                    for email, r in claimers.items():
                        r.won = email in won
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
