"""SMTP delivery: a pool of reused sessions, each taking the next message as it is free.

Each message is claimed in the ledger (committed) before any SMTP traffic,
then sent in one transaction (``session.py``). Outcomes:

- 2xx after the final dot: sent (recorded with the connection's next
  claim when the ledger offers ``claim_next``, else at once or per batch);
- 4xx, 552, and a connection lost before the final dot: temporary, retried
  in this run with exponential backoff up to ``max_attempts``, then marked
  failed with a ``next_attempt``;
- other 5xx: permanent, never retried;
- a connection lost after the final dot, before the reply: unknown. The
  server may have taken it, so it is never sent again in this run.

Problems of the whole run rather than one recipient (login refused, server
unreachable, the sender address refused, a relay that refuses to relay for
us) stop the run with ``SendAborted``; the message being sent is released
as failed-temporary, due again at once. So does the same permanent refusal
coming back again and again (``replies.RefusalWatch``): the relay refuses
us, and every row it refused so is made due again rather than failed.

Once ``interrupt`` is set (SIGTERM, Ctrl-C), no worker claims another
message: the transactions in flight finish and are recorded, then
``send`` returns its report, so an interrupted run leaves nothing claimed.

The reply to the final dot may take up to ten minutes (RFC 5321
4.5.3.2.6); ``settings.timeout`` bounds every other wait.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from digest.config import SenderSettings
from digest.errors import SendError
from digest.models import Delivery, Outgoing
from digest.send.base import Ledger, SendAborted, SendEvent, SendReport, Tally, TokenBucket
from digest.send.feed import Feed, Marks
from digest.send.replies import REFUSED_US, RefusalWatch
from digest.send.session import AfterDot, ConnectFailed, Fatal, Refused, SmtpSession


class SmtpSender:
    """Sends over ``settings.connections`` reused SMTP connections.

    ``envelope_from`` is the bare bounce address for MAIL FROM. ``backoff``
    is the first retry delay in seconds (doubling, at most ``backoff_cap``);
    Each message is claimed on its own, just before its SMTP transaction;
    with a ledger that has ``claim_next`` the previous message's ``sent``
    mark rides in that same transaction, so a message costs one commit
    (shared with the other connections claiming at the same moment), and
    each worker takes the next message only when it is free. Otherwise a
    worker takes ``batch`` messages of one issue at a time.
    ``claim_ahead=True`` (with ``claim_many``) claims a whole batch in one
    commit instead: faster, but a crash then leaves up to ``batch`` rows per
    connection ``unknown`` that were never tried. ``tls_context`` overrides the default
    certificate checks (tests use it with a self-signed server); ``sleep``
    waits between retries and ``rate_limit`` replaces the bucket built from
    ``settings.rate``.
    """

    def __init__(
        self,
        settings: SenderSettings,
        envelope_from: str,
        *,
        backoff: float = 0.5,
        backoff_cap: float = 60.0,
        batch: int = 16,
        claim_ahead: bool = False,
        tls_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self.settings = settings
        self.envelope_from = envelope_from.encode("utf-8")
        self.local_hostname = envelope_from.rpartition("@")[2] or "localhost"
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.batch = max(1, batch)
        self.claim_ahead = claim_ahead
        self.tls = tls_context or ssl.create_default_context()
        self.sleep = sleep
        self.max_attempts = max(1, settings.max_attempts)
        if rate_limit is None and settings.rate > 0:
            rate_limit = TokenBucket(settings.rate)
        self.bucket = rate_limit

    def delay(self, attempt: int) -> float:
        """Backoff before try ``attempt + 1``: base, 2 x base, 4 x base, ..."""
        return min(self.backoff_cap, self.backoff * 2.0 ** (attempt - 1))

    def send(
        self,
        messages: Iterable[Outgoing],
        ledger: Ledger,
        *,
        clock: Callable[[], datetime],
        should_send: Callable[[Outgoing], bool] | None = None,
        progress: Callable[[SendEvent], None] | None = None,
        interrupt: threading.Event | None = None,
    ) -> SendReport:
        """Send every message once; see the module docstring for outcomes."""
        run = _Run(self, ledger, clock, should_send, Tally(progress), interrupt)
        return run.execute(messages)


class _Run:
    """One ``send`` call: the workers and their shared state."""

    def __init__(
        self,
        sender: SmtpSender,
        ledger: Ledger,
        clock: Callable[[], datetime],
        should_send: Callable[[Outgoing], bool] | None,
        tally: Tally,
        interrupt: threading.Event | None = None,
    ) -> None:
        self.s = sender
        self.ledger = ledger
        self.clock = clock
        self.should_send = should_send
        self.tally = tally
        self.stop = threading.Event()  # set by the run itself: a fatal error or an exception
        self.interrupt = interrupt or threading.Event()  # set from outside: SIGTERM, Ctrl-C
        self.refusals = RefusalWatch()
        self.error: BaseException | None = None
        self.claim_many = getattr(ledger, "claim_many", None) if sender.claim_ahead else None
        self.claim_next = getattr(ledger, "claim_next", None)
        self.mark_sent_many = getattr(ledger, "mark_sent_many", None)
        # With claim_next a worker takes one message at a time (its marks ride with the next
        # claim); claiming ahead, or marking per batch without claim_next, it takes a batch.
        self.take = 1 if self.claim_next is not None and self.claim_many is None else sender.batch

    def execute(self, messages: Iterable[Outgoing]) -> SendReport:
        feed = Feed(messages)
        n = self.s.settings.connections
        workers = [threading.Thread(target=self.worker, args=(feed,), name=f"smtp-{i}", daemon=True) for i in range(n)]
        for w in workers:
            w.start()
        try:
            for w in workers:
                w.join()
        except BaseException:
            self.stop.set()  # e.g. Ctrl-C: finish the current transactions only
            for w in workers:
                w.join()
            raise
        report = self.tally.report()
        if isinstance(self.error, SendError):
            raise SendAborted(str(self.error), report, code=self.error.code) from self.error
        if self.error is not None:
            raise self.error
        return report

    def stopping(self) -> bool:
        """No new message may be claimed: the run failed, or was interrupted."""
        return self.stop.is_set() or self.interrupt.is_set()

    def worker(self, feed: Feed) -> None:
        conn = SmtpSession(self.s.settings, self.s.envelope_from, self.s.local_hostname, self.s.tls)
        marks = Marks()
        try:
            while not self.stopping():
                chunk = feed.take(self.take)
                if not chunk:
                    break
                if marks.emails and chunk[0].issue_key != marks.issue_key:
                    self.flush(marks)
                self.chunk(conn, chunk, marks)
        except BaseException as exc:
            if self.error is None:
                self.error = exc
            self.stop.set()
        finally:
            try:
                self.flush(marks)
            finally:
                if self.stop.is_set():
                    conn.drop()
                else:
                    conn.quit()

    def flush(self, marks: Marks) -> None:
        if marks.emails and self.mark_sent_many is not None:
            self.mark_sent_many(marks.issue_key, marks.emails, self.clock())
        marks.emails = []

    def chunk(self, conn: SmtpSession, chunk: list[Outgoing], marks: Marks) -> None:
        ahead = self.claim_many is not None
        wanted: list[Outgoing] = []
        for msg in chunk:
            # Claiming one by one, ask just before each claim: an unsubscribe mid-chunk still counts.
            if not ahead or self.wanted(msg):
                wanted.append(msg)
        if not wanted:
            return
        self.open(conn)  # before claiming: an unreachable server claims nothing
        key = wanted[0].issue_key
        marks.issue_key = key
        if self.claim_many is not None:
            granted = set(self.claim_many(key, [m.recipient for m in wanted], self.clock()))
            todo = []
            for msg in wanted:
                if msg.recipient in granted:
                    granted.discard(msg.recipient)
                    todo.append(msg)
                else:
                    self.tally.add(Delivery.SKIPPED, msg.recipient)
        else:
            todo = wanted
        try:
            for i, msg in enumerate(todo):
                if self.stopping():
                    # Stop between transactions, never inside one: nothing is left claimed.
                    if ahead:
                        self.release(todo[i:])
                    break
                if not ahead and not (self.wanted(msg) and self.claim(key, msg.recipient, marks)):
                    continue
                try:
                    self.one(conn, msg, marks.emails)
                except Fatal:
                    self.release(todo[i + 1 :] if ahead else [])
                    raise
        finally:
            if ahead or self.claim_next is None:
                self.flush(marks)  # claiming ahead, marks are recorded per batch

    def wanted(self, msg: Outgoing) -> bool:
        """``should_send``, counting a refusal as skipped."""
        if self.should_send is None or self.should_send(msg):
            return True
        self.tally.add(Delivery.SKIPPED, msg.recipient)
        return False

    def claim(self, key: str, email: str, marks: Marks) -> bool:
        """Claim one row, committing the pending ``sent`` marks in the same transaction when the ledger can."""
        if self.claim_next is None or self.mark_sent_many is None:
            won = bool(self.ledger.claim(key, email, self.clock()))
        else:
            won = bool(self.claim_next(key, email, self.clock(), sent=marks.emails))
            marks.emails = []
        if not won:
            self.tally.add(Delivery.SKIPPED, email)
        return won

    def open(self, conn: SmtpSession) -> None:
        for attempt in range(1, self.s.max_attempts + 1):
            try:
                conn.ensure()
                return
            except ConnectFailed as exc:
                if attempt == self.s.max_attempts:
                    raise Fatal(str(exc), code=exc.code) from exc
                self.pause(self.s.delay(attempt))
                if self.stopping():
                    return  # nothing is claimed yet; the caller stops before claiming

    def one(self, conn: SmtpSession, msg: Outgoing, sent: list[str]) -> None:
        """Deliver one claimed message, retrying temporary failures, and record the outcome."""
        key, email = msg.issue_key, msg.recipient
        attempt = 0
        retry: SendError
        while True:
            attempt += 1
            if self.s.bucket is not None:
                self.s.bucket.acquire()
            try:
                conn.deliver(msg)
            except AfterDot as exc:
                self.ledger.mark_unknown(key, email, self.clock(), str(exc))
                self.tally.add(Delivery.UNKNOWN, email, None, str(exc), attempt)
                return
            except Fatal as exc:
                # Not this recipient's fault: free the row for a later run.
                self.fail(msg, exc, attempt, now_retry=True)
                raise
            except ConnectFailed as exc:
                if attempt >= self.s.max_attempts:
                    self.fail(msg, exc, attempt, now_retry=True)
                    raise Fatal(str(exc), code=exc.code) from exc
                retry = exc
            except SendError as exc:
                conn.reset()
                if exc.permanent or attempt >= self.s.max_attempts:
                    self.fail(msg, exc, attempt)
                    self.watch(msg, exc)
                    return
                retry = exc
            else:
                if self.mark_sent_many is not None:
                    sent.append(email)
                else:
                    self.ledger.mark_sent(key, email, self.clock())
                self.tally.add(Delivery.SENT, email, attempts=attempt)
                self.refusals.observe(email, None)
                return
            self.pause(self.s.delay(attempt))
            if self.stopping():
                # Stopping (SIGTERM, or another worker's fatal error): record the row as due
                # again now rather than go on retrying while holding its claim.
                self.fail(msg, retry, attempt, now_retry=True)
                return

    def pause(self, seconds: float) -> None:
        """The backoff before a retry; an interrupt cuts it short (an injected ``sleep`` is used as is)."""
        if self.s.sleep is time.sleep:
            self.interrupt.wait(seconds)
        else:
            self.s.sleep(seconds)

    def fail(self, msg: Outgoing, exc: SendError, attempts: int, *, now_retry: bool = False) -> None:
        now = self.clock()
        permanent = exc.permanent and not now_retry
        retry_at = None if permanent else now + timedelta(seconds=0 if now_retry else self.s.delay(attempts))
        self.ledger.mark_failed(
            msg.issue_key,
            msg.recipient,
            now,
            permanent=permanent,
            code=exc.code,
            error=str(exc),
            next_attempt=retry_at,
        )
        outcome = Delivery.FAILED_PERMANENT if permanent else Delivery.FAILED_TEMPORARY
        self.tally.add(outcome, msg.recipient, exc.code, str(exc), attempts)

    def watch(self, msg: Outgoing, exc: SendError) -> None:
        """Stop the run when the same permanent refusal keeps coming: the relay refuses us.

        The rows refused in that streak are made due again (not failed for
        good, and so never marked bounced): it was our mail that was refused.
        """
        reply = exc.reply if isinstance(exc, Refused) and exc.permanent else None
        release = self.refusals.observe(msg.recipient, reply)
        if not release:
            return
        now = self.clock()
        for email in release:
            self.ledger.mark_failed(
                msg.issue_key,
                email,
                now,
                permanent=False,
                code=exc.code,
                error=f"{exc} ({REFUSED_US})",
                next_attempt=now,
            )
        self.tally.retract(Delivery.FAILED_PERMANENT, release)
        for email in release:
            self.tally.add(Delivery.FAILED_TEMPORARY, email)
        raise Fatal(f"the relay refuses us: {f'{reply.code} {reply.text}' if reply else exc}", code=exc.code)

    def release(self, msgs: list[Outgoing]) -> None:
        """Claimed messages never tried because the run stops: due again at once."""
        for msg in msgs:
            self.fail(msg, SendError("not tried: the run stopped early"), 0, now_retry=True)
