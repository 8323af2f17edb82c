"""SMTP delivery: a pool of reused connections fed from one work queue.

Each message is claimed in the ledger (committed) before any SMTP traffic,
then sent in one transaction. Replies are classified once, here:

- 2xx after the final dot: sent (ledger marked at once, or per small batch
  when the ledger offers ``mark_sent_many``);
- 4xx, 552, and a connection lost before the final dot: temporary, retried
  in this run with exponential backoff up to ``max_attempts``, then marked
  failed with a ``next_attempt``;
- other 5xx: permanent, never retried;
- a connection lost after the final dot, before the reply: unknown. The
  server may have taken it, so it is never sent again in this run.

Problems of the whole run rather than one recipient (login refused, server
unreachable, the sender address refused) stop the run with ``SendAborted``.
"""

from __future__ import annotations

import queue
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from itertools import groupby, islice
from operator import attrgetter

from digest.config import SenderSettings
from digest.errors import SendError
from digest.models import Delivery, Outgoing
from digest.send.base import Ledger, SendAborted, SendEvent, SendReport, Tally, TokenBucket

_DOTS = re.compile(rb"(?m)^\.")
_CRLF = b"\r\n"


class _Fatal(SendError):
    """Stops the run: nothing later in it can succeed."""


class _ConnectFailed(SendError):
    """No session could be opened; temporary, and fatal once retries run out."""


class _AfterDot(SendError):
    """The data and the final dot went out but no reply came back."""


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _refused(stage: str, code: int, text: bytes | str) -> SendError:
    msg = f"{stage} refused: {code} {_text(text)}".strip()
    if code == 530 or (stage == "MAIL" and code >= 500 and code != 552):
        # About the sender or the session, not this recipient: failing every
        # subscriber permanently would be wrong.
        return _Fatal(msg, code=code, permanent=True)
    return SendError(msg, code=code, permanent=code >= 500 and code != 552)


class _Connection:
    """One worker's SMTP session, opened lazily and reused up to ``per_connection``."""

    def __init__(self, sender: SmtpSender) -> None:
        self.s = sender
        self.client: smtplib.SMTP | None = None
        self.used = 0
        self.pipelining = False
        self.utf8 = False
        self.eightbit = False

    def ensure(self) -> smtplib.SMTP:
        if self.client is not None and self.used >= self.s.settings.per_connection:
            self.quit()
        if self.client is None:
            self.client = self._open()
            self.used = 0
        return self.client

    def _open(self) -> smtplib.SMTP:
        st = self.s.settings
        where = f"{st.host}:{st.port}"
        try:
            client: smtplib.SMTP
            if st.security == "tls":
                client = smtplib.SMTP_SSL(
                    st.host,
                    st.port,
                    local_hostname=self.s.local_hostname,
                    timeout=st.timeout,
                    context=self.s.tls,
                )
            else:
                client = smtplib.SMTP(
                    st.host, st.port, local_hostname=self.s.local_hostname, timeout=st.timeout
                )
            try:
                client.ehlo()
                if st.security == "starttls":
                    client.starttls(context=self.s.tls)
                    client.ehlo()
                if st.username:
                    client.login(st.username, st.password)
            except BaseException:
                client.close()
                raise
        except smtplib.SMTPAuthenticationError as exc:
            text = _text(exc.smtp_error)
            raise _Fatal(
                f"{where}: login as {st.username!r} refused: {exc.smtp_code} {text}", code=exc.smtp_code
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise _Fatal(f"{where}: {exc} (check sender.security and sender.username)") from exc
        except ssl.SSLError as exc:
            raise _Fatal(f"{where}: TLS failed: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            text = _text(exc.smtp_error)
            raise _ConnectFailed(f"{where}: {exc.smtp_code} {text}", code=exc.smtp_code) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise _ConnectFailed(f"cannot connect to {where}: {exc}") from exc
        self.pipelining = client.has_extn("pipelining")
        self.utf8 = client.has_extn("smtputf8")
        self.eightbit = client.has_extn("8bitmime")
        return client

    def deliver(self, msg: Outgoing) -> None:
        """One transaction; raises SendError, or ``_AfterDot`` when the reply was lost."""
        client = self.ensure()
        self.used += 1
        options = b""
        try:
            rcpt = msg.recipient.encode("ascii")
        except UnicodeEncodeError:
            if not self.utf8:
                raise SendError(
                    f"{msg.recipient}: the server does not take non-ASCII addresses (no SMTPUTF8)",
                    permanent=True,
                ) from None
            rcpt = msg.recipient.encode("utf-8")
            options = b" SMTPUTF8"
        data = msg.data
        if self.eightbit and not data.isascii():
            options += b" BODY=8BITMIME"
        mail = b"MAIL FROM:<" + self.s.envelope_from + b">" + options + _CRLF
        rcpt_cmd = b"RCPT TO:<" + rcpt + b">" + _CRLF
        try:
            if self.pipelining:
                self._pipelined(client, mail, rcpt_cmd)
            else:
                self._step(client, "MAIL", mail, (250,))
                self._step(client, "RCPT", rcpt_cmd, (250, 251))
                self._step(client, "DATA", b"DATA\r\n", (354,))
            payload = _DOTS.sub(b"..", data)
            if not payload.endswith(_CRLF):
                payload += _CRLF
            client.send(payload + b".\r\n")
        except (smtplib.SMTPException, OSError) as exc:
            self.drop()
            raise SendError(f"connection lost before the end of the message: {exc}") from exc
        try:
            code, text = client.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self.drop()
            raise _AfterDot(f"connection lost after the message was sent, before the reply: {exc}") from exc
        if not 200 <= code < 300:
            raise _refused("message", code, text)

    def _step(self, client: smtplib.SMTP, stage: str, line: bytes, ok: tuple[int, ...]) -> None:
        client.send(line)
        code, text = client.getreply()
        if code not in ok:
            raise _refused(stage, code, text)

    def _pipelined(self, client: smtplib.SMTP, mail: bytes, rcpt: bytes) -> None:
        # RFC 2920: MAIL, RCPT and DATA in one write, then their three replies.
        client.send(mail + rcpt + b"DATA\r\n")
        replies = [client.getreply() for _ in range(3)]
        failed = [
            (s, c, t) for s, (c, t) in zip(("MAIL", "RCPT"), replies, strict=False) if c not in (250, 251)
        ]
        if replies[2][0] == 354 and not failed:
            return
        if replies[2][0] == 354:  # a server that opened DATA anyway: end it empty
            client.send(b".\r\n")
            client.getreply()
        stage, code, text = failed[0] if failed else ("DATA", *replies[2])
        raise _refused(stage, code, text)

    def reset(self) -> None:
        """RSET after a failed transaction; a session that cannot is dropped."""
        if self.client is None:
            return
        try:
            code, _ = self.client.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self.drop()

    def drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def quit(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except (smtplib.SMTPException, OSError):
                pass  # a closing session that fails to say goodbye changes nothing
            finally:
                self.client.close()
                self.client = None


class SmtpSender:
    """Sends over ``settings.connections`` reused SMTP connections.

    ``envelope_from`` is the bare bounce address for MAIL FROM. ``backoff``
    is the first retry delay in seconds (doubling, at most ``backoff_cap``);
    ``batch`` is how many messages of one issue a worker claims at once when
    the ledger has ``claim_many``. ``tls_context`` overrides the default
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
    ) -> SendReport:
        """Send every message once; see the module docstring for outcomes."""
        run = _Run(self, ledger, clock, should_send, Tally(progress))
        return run.execute(messages)


class _Run:
    """One ``send`` call: the feeding thread, the workers and their shared state."""

    def __init__(
        self,
        sender: SmtpSender,
        ledger: Ledger,
        clock: Callable[[], datetime],
        should_send: Callable[[Outgoing], bool] | None,
        tally: Tally,
    ) -> None:
        self.s = sender
        self.ledger = ledger
        self.clock = clock
        self.should_send = should_send
        self.tally = tally
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.work: queue.Queue[list[Outgoing] | None] = queue.Queue(maxsize=sender.settings.connections * 4)
        self.claim_many = getattr(ledger, "claim_many", None)
        self.mark_sent_many = getattr(ledger, "mark_sent_many", None)

    def execute(self, messages: Iterable[Outgoing]) -> SendReport:
        n = self.s.settings.connections
        workers = [threading.Thread(target=self.worker, name=f"smtp-{i}", daemon=True) for i in range(n)]
        for w in workers:
            w.start()
        try:
            for chunk in self.chunks(messages):
                if not self.put(chunk):
                    break
        finally:
            for _ in workers:
                self.put(None)
            for w in workers:
                w.join()
        report = self.tally.report()
        if isinstance(self.error, SendError):
            raise SendAborted(str(self.error), report, code=self.error.code) from self.error
        if self.error is not None:
            raise self.error
        return report

    def chunks(self, messages: Iterable[Outgoing]) -> Iterator[list[Outgoing]]:
        size = self.s.batch if self.claim_many is not None else 1
        for _, group in groupby(messages, key=attrgetter("issue_key")):
            while chunk := list(islice(group, size)):
                yield chunk

    def put(self, item: list[Outgoing] | None) -> bool:
        # Poll so a feeder never blocks forever on workers that have stopped.
        while not self.stop.is_set():
            try:
                self.work.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def worker(self) -> None:
        conn = _Connection(self.s)
        try:
            while not self.stop.is_set():
                try:
                    chunk = self.work.get(timeout=0.05)
                except queue.Empty:
                    continue  # wakes up to notice a stop
                if chunk is None:
                    break
                self.chunk(conn, chunk)
        except BaseException as exc:
            if self.error is None:
                self.error = exc
            self.stop.set()
        finally:
            if self.stop.is_set():
                conn.drop()
            else:
                conn.quit()

    def chunk(self, conn: _Connection, chunk: list[Outgoing]) -> None:
        wanted: list[Outgoing] = []
        for msg in chunk:
            if self.should_send is None or self.should_send(msg):
                wanted.append(msg)
            else:
                self.tally.add(Delivery.SKIPPED, msg.recipient)
        if not wanted:
            return
        self.open(conn)  # before claiming: an unreachable server claims nothing
        key = wanted[0].issue_key
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
        sent: list[str] = []
        try:
            for i, msg in enumerate(todo):
                if self.claim_many is None and not self.ledger.claim(key, msg.recipient, self.clock()):
                    self.tally.add(Delivery.SKIPPED, msg.recipient)
                    continue
                try:
                    self.one(conn, msg, sent)
                except _Fatal:
                    self.release(todo[i + 1 :] if self.claim_many is not None else [])
                    raise
        finally:
            if sent and self.mark_sent_many is not None:
                self.mark_sent_many(key, sent, self.clock())

    def open(self, conn: _Connection) -> None:
        for attempt in range(1, self.s.max_attempts + 1):
            try:
                conn.ensure()
                return
            except _ConnectFailed as exc:
                if attempt == self.s.max_attempts:
                    raise _Fatal(str(exc), code=exc.code) from exc
                self.s.sleep(self.s.delay(attempt))

    def one(self, conn: _Connection, msg: Outgoing, sent: list[str]) -> None:
        """Deliver one claimed message, retrying temporary failures, and record the outcome."""
        key, email = msg.issue_key, msg.recipient
        attempt = 0
        while True:
            attempt += 1
            if self.s.bucket is not None:
                self.s.bucket.acquire()
            try:
                conn.deliver(msg)
            except _AfterDot as exc:
                self.ledger.mark_unknown(key, email, self.clock(), str(exc))
                self.tally.add(Delivery.UNKNOWN, email, None, str(exc), attempt)
                return
            except _Fatal as exc:
                # Not this recipient's fault: free the row for a later run.
                self.fail(msg, exc, attempt, now_retry=True)
                raise
            except _ConnectFailed as exc:
                if attempt >= self.s.max_attempts:
                    self.fail(msg, exc, attempt, now_retry=True)
                    raise _Fatal(str(exc), code=exc.code) from exc
            except SendError as exc:
                conn.reset()
                if exc.permanent or attempt >= self.s.max_attempts:
                    self.fail(msg, exc, attempt)
                    return
            else:
                if self.mark_sent_many is not None:
                    sent.append(email)
                else:
                    self.ledger.mark_sent(key, email, self.clock())
                self.tally.add(Delivery.SENT, email, attempts=attempt)
                return
            self.s.sleep(self.s.delay(attempt))

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

    def release(self, msgs: list[Outgoing]) -> None:
        """Claimed messages never tried because the run stops: due again at once."""
        for msg in msgs:
            self.fail(msg, SendError("not tried: the run stopped early"), 0, now_retry=True)
