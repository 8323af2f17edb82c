"""The seams of the send stage: what a sender needs and what it reports.

``Ledger`` is the store's delivery ledger as the senders see it; ``Sender``
is what the pipeline calls. ``SendReport`` and ``SendEvent`` are the values
that come back. ``TokenBucket`` is the shared rate limit, and ``Tally``
the thread-safe counter behind both report and progress events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from digest.errors import SendError
from digest.models import Delivery, Outgoing

#: ``(email, code, error)`` for a message that was not (surely) delivered.
Problem = tuple[str, int | None, str]


class Ledger(Protocol):
    """The delivery ledger; each call commits before it returns.

    ``claim`` runs before any SMTP traffic for a message: ``False`` means
    another run holds it or it is done, and the message is skipped.
    Calls may come from several threads at once. When the ledger also has
    ``claim_many(issue_key, emails, now) -> list[str]`` (returning the
    claimed emails exactly as given) and ``mark_sent_many(issue_key,
    emails, now)``, the SMTP sender claims and marks in small batches.
    """

    def claim(self, issue_key: str, email: str, now: datetime) -> bool: ...

    def mark_sent(self, issue_key: str, email: str, now: datetime) -> None: ...

    def mark_failed(
        self,
        issue_key: str,
        email: str,
        now: datetime,
        *,
        permanent: bool,
        code: int | None,
        error: str,
        next_attempt: datetime | None,
    ) -> None: ...

    def mark_unknown(self, issue_key: str, email: str, now: datetime, error: str) -> None: ...


class MemoryLedger:
    """A ledger that keeps nothing beyond the run: dry runs, test sends, one transactional mail.

    Every claim succeeds; ``sent`` holds the addresses marked sent and ``error`` the last failure.
    """

    def __init__(self) -> None:
        self.sent: set[str] = set()
        self.error = ""

    def claim(self, issue_key: str, email: str, now: datetime) -> bool:
        return True

    def mark_sent(self, issue_key: str, email: str, now: datetime) -> None:
        self.sent.add(email)

    def mark_failed(
        self,
        issue_key: str,
        email: str,
        now: datetime,
        *,
        permanent: bool,
        code: int | None,
        error: str,
        next_attempt: datetime | None,
    ) -> None:
        self.error = error

    def mark_unknown(self, issue_key: str, email: str, now: datetime, error: str) -> None:
        self.error = error


@dataclass(frozen=True, slots=True)
class SendReport:
    """What one ``send`` call did. ``attempts`` counts SMTP transactions begun."""

    sent: int = 0
    failed_permanent: int = 0
    failed_temporary: int = 0
    unknown: int = 0
    skipped: int = 0
    attempts: int = 0
    problems: tuple[Problem, ...] = ()

    @property
    def failed(self) -> int:
        """Messages not surely delivered: failed either way, or unknown."""
        return self.failed_permanent + self.failed_temporary + self.unknown


class SendEvent(NamedTuple):
    """Progress so far, given after each message: counts and the last outcome.

    A named tuple rather than a frozen dataclass: one is made per message,
    under the tally's lock, and a tuple is made several times faster.
    """

    sent: int
    failed_permanent: int
    failed_temporary: int
    unknown: int
    skipped: int
    last: Delivery
    recipient: str

    @property
    def done(self) -> int:
        return self.sent + self.failed_permanent + self.failed_temporary + self.unknown + self.skipped


class Sender(Protocol):
    """Hands messages to the mail system, keeping the ledger up to date.

    ``clock`` gives the current time for ledger rows; ``should_send`` is
    asked just before each claim (``False``: skip without claiming);
    ``progress`` gets a ``SendEvent`` after every message. Both callbacks
    may be called from worker threads (never two ``progress`` calls at once).
    Once ``interrupt`` is set (SIGTERM, Ctrl-C) no new message is claimed:
    the transactions in flight finish and are recorded, then ``send`` returns.
    """

    def send(
        self,
        messages: Iterable[Outgoing],
        ledger: Ledger,
        *,
        clock: Callable[[], datetime],
        should_send: Callable[[Outgoing], bool] | None = None,
        progress: Callable[[SendEvent], None] | None = None,
        interrupt: threading.Event | None = None,
    ) -> SendReport: ...


class SendAborted(SendError):
    """The run stopped early (refused login, unreachable server, sender or relaying refused).

    Messages not yet claimed stay pending for the next run; ``report`` says
    what was done before the stop.
    """

    def __init__(self, message: str, report: SendReport, *, code: int | None = None) -> None:
        super().__init__(message, code=code, permanent=False)
        self.report = report


class Tally:
    """Counts outcomes from several threads and forwards them to ``progress``."""

    def __init__(self, progress: Callable[[SendEvent], None] | None) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(Delivery, 0)
        self._problems: list[Problem] = []
        self.attempts = 0

    def add(self, outcome: Delivery, email: str, code: int | None = None, error: str = "", attempts: int = 0) -> None:
        with self._lock:
            self._counts[outcome] += 1
            self.attempts += attempts
            if error:
                self._problems.append((email, code, error))
            if self._progress is not None:
                # Under the lock so a progress bar sees counts in order.
                c = self._counts
                self._progress(
                    SendEvent(
                        sent=c[Delivery.SENT],
                        failed_permanent=c[Delivery.FAILED_PERMANENT],
                        failed_temporary=c[Delivery.FAILED_TEMPORARY],
                        unknown=c[Delivery.UNKNOWN],
                        skipped=c[Delivery.SKIPPED],
                        last=outcome,
                        recipient=email,
                    )
                )

    def retract(self, outcome: Delivery, emails: list[str]) -> None:
        """Take back outcomes counted for ``emails`` (rows made due again after all)."""
        with self._lock:
            gone = set(emails)
            self._counts[outcome] -= len(gone)
            self._problems = [p for p in self._problems if p[0] not in gone]

    def report(self) -> SendReport:
        with self._lock:
            c = self._counts
            return SendReport(
                sent=c[Delivery.SENT],
                failed_permanent=c[Delivery.FAILED_PERMANENT],
                failed_temporary=c[Delivery.FAILED_TEMPORARY],
                unknown=c[Delivery.UNKNOWN],
                skipped=c[Delivery.SKIPPED],
                attempts=self.attempts,
                problems=tuple(self._problems),
            )


class TokenBucket:
    """A rate limit shared by threads: ``acquire()`` blocks until a token is free.

    ``rate`` tokens a second, at most ``burst`` saved up. Each caller
    reserves its token at once and sleeps outside the lock, so waiters are
    served in order and the long-run rate is exact. ``clock`` and ``sleep``
    are injectable so tests need no real time.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be greater than 0")
        self._rate = rate
        self._burst = max(1.0, burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self._burst
        self._last = clock()

    def acquire(self) -> float:
        """Take one token, sleeping as long as needed; returns the time slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait
