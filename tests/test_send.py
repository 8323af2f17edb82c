"""The send stage against a real aiosmtpd server on loopback, and the Maildir sender."""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.config import SenderSettings
from digest.errors import ConfigError
from digest.models import Delivery, Outgoing
from digest.send import MaildirSender, SendAborted, SendEvent, SmtpSender, TokenBucket, make_sender
from digest.send.session import dot_stuff
from tests.fixtures.smtp_server import SmtpServer

NOW = datetime(2018, 1, 15, 8, 0, tzinfo=UTC)
ISSUE = "2018-W02"


def clock() -> datetime:
    return NOW


class MemoryLedger:
    """The store's delivery ledger, in memory: one state per (issue, email)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: dict[tuple[str, str], Delivery] = {}
        self.failures: dict[tuple[str, str], dict[str, object]] = {}
        self.claims: list[str] = []

    def claim(self, issue_key: str, email: str, now: datetime) -> bool:
        with self.lock:
            self.claims.append(email)
            if (issue_key, email) in self.state:
                return False
            self.state[issue_key, email] = Delivery.CLAIMED
            return True

    def _set(self, issue_key: str, email: str, to: Delivery) -> None:
        with self.lock:
            assert self.state.get((issue_key, email)) is Delivery.CLAIMED, f"{email} was not claimed"
            self.state[issue_key, email] = to

    def mark_sent(self, issue_key: str, email: str, now: datetime) -> None:
        self._set(issue_key, email, Delivery.SENT)

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
        self._set(issue_key, email, Delivery.FAILED_PERMANENT if permanent else Delivery.FAILED_TEMPORARY)
        with self.lock:
            self.failures[issue_key, email] = {"code": code, "error": error, "next_attempt": next_attempt}

    def mark_unknown(self, issue_key: str, email: str, now: datetime, error: str) -> None:
        self._set(issue_key, email, Delivery.UNKNOWN)

    def of(self, email: str, issue_key: str = ISSUE) -> Delivery | None:
        return self.state.get((issue_key, email))

    def count(self, state: Delivery) -> int:
        return sum(1 for s in self.state.values() if s is state)


class BatchLedger(MemoryLedger):
    """A ledger that also offers the store's batched calls."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def claim_many(self, issue_key: str, emails: list[str], now: datetime) -> list[str]:
        self.batches.append(len(emails))
        return [e for e in emails if self.claim(issue_key, e, now)]

    def mark_sent_many(self, issue_key: str, emails: list[str], now: datetime) -> None:
        for e in emails:
            self.mark_sent(issue_key, e, now)


def message(i: int, issue: str = ISSUE) -> Outgoing:
    to = f"user{i}@example.org"
    data = (
        f"From: Cyber Weekly <digest@example.org>\r\nTo: {to}\r\nSubject: Issue {issue}\r\n"
        f"Message-ID: <{issue}.{i}@example.org>\r\n\r\nHello {i}\r\n.a line that starts with a dot\r\n"
    ).encode()
    return Outgoing(issue_key=issue, recipient=to, message_id=f"<{issue}.{i}@example.org>", data=data)


def test_a_message_of_dotted_lines_arrives_intact_unstuffed(smtp_server: SmtpServer) -> None:
    # A template's message is sent as it is (dot_safe: no line starts with a dot, so no
    # stuffing pass); the entries' lines that start with dots still arrive as written.
    from digest.compose import ComposeSettings, MessageTemplate, Recipient
    from digest.models import Rendered, TokenSet

    text = ".hidden\n..two dots\n.\nend.\n" + "." * 200
    rendered = Rendered(ISSUE, "all", (), "S", "<p>.x</p>\n.<b>y</b>", text, TokenSet.fresh())
    settings = ComposeSettings(
        from_="Cyber Weekly <digest@example.org>",
        list_id="Cyber Weekly <cyber-weekly.example.org>",
        date=NOW,
        unsubscribe_mailto="",
        title="Cyber Weekly",
    )
    out = MessageTemplate.build(rendered, settings).personalise(
        Recipient(".dot@example.org", ".Dot", "https://digest.example.org/u/.x")
    )
    assert out.dot_safe
    report = smtp(smtp_server).send([out], MemoryLedger(), clock=clock)
    assert report.sent == 1
    (got,) = smtp_server.messages
    assert got.data == out.data
    body = email.message_from_bytes(got.data, policy=email.policy.default).get_body(("plain",))
    assert body is not None and body.get_content().replace("\r\n", "\n") == text + "\n"


def settings_for(server: SmtpServer, **kw: object) -> SenderSettings:
    base: dict[str, object] = {
        "transport": "smtp",
        "host": server.host,
        "port": server.port,
        "connections": 2,
        "per_connection": 100,
        "max_attempts": 3,
        "timeout": 5.0,
    }
    base.update(kw)
    return SenderSettings(**base)  # type: ignore[arg-type]


def smtp(server: SmtpServer, **kw: object) -> SmtpSender:
    return SmtpSender(settings_for(server, **kw), "bounces@example.org", backoff=0.001)


def test_many_messages_over_several_connections_arrive_exactly_once(smtp_server: SmtpServer) -> None:
    msgs = [message(i) for i in range(60)]
    ledger = MemoryLedger()
    report = smtp(smtp_server, connections=3).send(msgs, ledger, clock=clock)

    assert report.sent == 60 and report.failed == 0 and report.skipped == 0
    assert report.attempts == 60
    got = sorted((m.rcpt_tos, m.data) for m in smtp_server.messages)
    assert got == sorted(((m.recipient,), m.data) for m in msgs)  # dot-stuffing undone, bytes intact
    assert {m.mail_from for m in smtp_server.messages} == {"bounces@example.org"}
    assert ledger.count(Delivery.SENT) == 60
    assert 1 < smtp_server.connections <= 3


def test_batched_ledger_claims_in_chunks_and_marks_all_sent(smtp_server: SmtpServer) -> None:
    msgs = [message(i) for i in range(40)] + [message(i, "2018-W03") for i in range(5)]
    ledger = BatchLedger()
    sender = SmtpSender(settings_for(smtp_server), "b@example.org", batch=8, claim_ahead=True)
    report = sender.send(msgs, ledger, clock=clock)

    assert report.sent == 45
    assert len(smtp_server.messages) == 45
    assert ledger.count(Delivery.SENT) == 45
    assert max(ledger.batches) == 8 and sum(ledger.batches) == 45
    assert ledger.of("user0@example.org", "2018-W03") is Delivery.SENT


def test_per_connection_cap_quits_and_reconnects(smtp_server: SmtpServer) -> None:
    report = smtp(smtp_server, connections=1, per_connection=5).send(
        [message(i) for i in range(12)], MemoryLedger(), clock=clock
    )

    assert report.sent == 12
    assert smtp_server.connections == 3
    assert smtp_server.count("QUIT") == 3


def test_already_claimed_messages_are_skipped_and_not_sent(smtp_server: SmtpServer) -> None:
    ledger = MemoryLedger()
    ledger.claim(ISSUE, "user1@example.org", NOW)
    report = smtp(smtp_server).send([message(i) for i in range(3)], ledger, clock=clock)

    assert (report.sent, report.skipped) == (2, 1)
    assert smtp_server.received("user1@example.org") == []
    assert ledger.of("user1@example.org") is Delivery.CLAIMED


def test_should_send_false_skips_without_claiming(smtp_server: SmtpServer) -> None:
    ledger = MemoryLedger()
    keep = lambda m: m.recipient != "user2@example.org"  # noqa: E731
    report = smtp(smtp_server).send([message(i) for i in range(4)], ledger, clock=clock, should_send=keep)

    assert (report.sent, report.skipped) == (3, 1)
    assert "user2@example.org" not in ledger.claims
    assert smtp_server.received("user2@example.org") == []


def test_progress_reports_every_message_in_order(smtp_server: SmtpServer) -> None:
    events: list[SendEvent] = []
    report = smtp(smtp_server, connections=3).send(
        [message(i) for i in range(20)],
        MemoryLedger(),
        clock=clock,
        should_send=lambda m: m.recipient != "user0@example.org",
        progress=events.append,
    )

    assert [e.done for e in events] == list(range(1, 21))
    assert (events[-1].sent, events[-1].skipped) == (report.sent, report.skipped) == (19, 1)
    assert {e.last for e in events} == {Delivery.SENT, Delivery.SKIPPED}


def test_pipelining_server_gets_each_message_once(smtp_server_factory: Callable[..., SmtpServer]) -> None:
    server = smtp_server_factory(pipelining=True)
    server.inject("RCPT", 451, recipient="user3@example.org")
    report = smtp(server).send([message(i) for i in range(10)], MemoryLedger(), clock=clock)

    assert report.sent == 10
    assert len(server.messages) == 10
    assert server.count("RCPT", "user3@example.org") == 2


def test_non_ascii_recipient_goes_out_with_smtputf8(smtp_server: SmtpServer) -> None:
    msg = Outgoing(ISSUE, "jürgen@example.org", "<x@example.org>", b"Subject: hi\r\n\r\nbody\r\n")
    report = smtp(smtp_server).send([msg], MemoryLedger(), clock=clock)

    assert report.sent == 1
    assert smtp_server.messages[0].rcpt_tos == ("jürgen@example.org",)


def test_rate_limit_takes_a_token_per_transaction(smtp_server: SmtpServer) -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(10, clock=lambda: now[0], sleep=sleep)
    sender = SmtpSender(settings_for(smtp_server, connections=1), "b@example.org", rate_limit=bucket)
    report = sender.send([message(i) for i in range(5)], MemoryLedger(), clock=clock)

    assert report.sent == 5
    assert slept == pytest.approx([0.1] * 4)


def test_token_bucket_paces_and_refills_with_an_injected_clock() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(4, burst=2, clock=lambda: now[0], sleep=sleep)
    waits = [bucket.acquire() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.25, 0.25])
    now[0] += 10  # idle: refills, but never past the burst
    assert [bucket.acquire() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.25])
    assert sum(slept) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_maildir_sender_writes_parseable_messages_and_marks_sent(tmp_path: Path) -> None:
    ledger = MemoryLedger()
    ledger.claim(ISSUE, "user2@example.org", NOW)
    msgs = [message(i) for i in range(4)]
    report = MaildirSender(tmp_path / "outbox").send(
        msgs, ledger, clock=clock, should_send=lambda m: m.recipient != "user3@example.org"
    )

    assert (report.sent, report.skipped) == (2, 2)
    files = sorted((tmp_path / "outbox" / "new").iterdir())
    assert len(files) == 2
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []
    parsed = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]
    assert sorted(str(p["To"]) for p in parsed) == ["user0@example.org", "user1@example.org"]
    assert all(p.get_content().startswith("Hello") for p in parsed)
    assert b"\r\n" not in files[0].read_bytes()
    assert ledger.of("user0@example.org") is Delivery.SENT and ledger.of("user1@example.org") is Delivery.SENT
    assert "user3@example.org" not in ledger.claims


def test_make_sender_picks_the_transport(tmp_path: Path) -> None:
    assert isinstance(make_sender(SenderSettings(transport="maildir", maildir=tmp_path)), MaildirSender)
    sender = make_sender(SenderSettings(transport="smtp", from_="Weekly <news@example.org>"))
    assert isinstance(sender, SmtpSender) and sender.envelope_from == b"news@example.org"
    with pytest.raises(ConfigError):
        make_sender(SenderSettings(transport="carrier-pigeon"))


@pytest.mark.parametrize("host", ["smtp.example.org", "192.0.2.10", "::ffff:192.0.2.10", "localhost.example.org"])
def test_make_sender_refuses_a_plaintext_login_to_a_remote_host(host: str) -> None:
    secret = "hunter2-xyzzy"
    settings = SenderSettings(transport="smtp", host=host, security="none", username="editor", password=secret)
    with pytest.raises(ConfigError, match=r"^sender\.security: ") as info:
        make_sender(settings)
    assert info.value.exit_code == 2
    assert host in str(info.value) and secret not in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST."])
def test_make_sender_allows_a_plaintext_login_to_loopback(host: str) -> None:
    settings = SenderSettings(transport="smtp", host=host, security="none", username="editor", password="pw")
    assert isinstance(make_sender(settings), SmtpSender)


@pytest.mark.parametrize(("security", "username"), [("starttls", "editor"), ("tls", "editor"), ("none", "")])
def test_make_sender_allows_a_remote_host_with_tls_or_without_login(security: str, username: str) -> None:
    settings = SenderSettings(transport="smtp", host="smtp.example.org", security=security, username=username)
    assert isinstance(make_sender(settings), SmtpSender)


def _tls(cert: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*cert)
    return server, ssl.create_default_context(cafile=str(cert[0]))


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_with_login(
    smtp_server_factory: Callable[..., SmtpServer], tls_cert: tuple[Path, Path], security: str
) -> None:
    server_ctx, client_ctx = _tls(tls_cert)
    server = smtp_server_factory(tls=server_ctx, implicit_tls=security == "tls", auth=("editor", "pw"))
    settings = settings_for(server, security=security, username="editor", password="pw")
    report = SmtpSender(settings, "b@example.org", tls_context=client_ctx).send(
        [message(i) for i in range(3)], MemoryLedger(), clock=clock
    )

    assert report.sent == 3 and len(server.messages) == 3


def test_untrusted_certificate_stops_the_run(
    smtp_server_factory: Callable[..., SmtpServer], tls_cert: tuple[Path, Path]
) -> None:
    server_ctx, _ = _tls(tls_cert)
    server = smtp_server_factory(tls=server_ctx)
    ledger = MemoryLedger()
    with pytest.raises(SendAborted, match="TLS failed"):
        smtp(server, security="starttls").send([message(0)], ledger, clock=clock)  # default trust store
    assert ledger.claims == [] and server.messages == []


def test_starttls_required_by_settings_but_not_offered(smtp_server: SmtpServer) -> None:
    with pytest.raises(SendAborted, match="STARTTLS"):
        smtp(smtp_server, security="starttls").send([message(0)], MemoryLedger(), clock=clock)


def test_each_message_is_marked_sent_before_its_progress_event(smtp_server: SmtpServer) -> None:
    ledger = MemoryLedger()
    seen: list[Delivery | None] = []

    def progress(event: SendEvent) -> None:
        seen.append(ledger.of(event.recipient))

    smtp(smtp_server).send([message(i) for i in range(6)], ledger, clock=clock, progress=progress)

    assert seen == [Delivery.SENT] * 6


def test_a_failing_message_source_stops_the_run_and_propagates(smtp_server: SmtpServer) -> None:
    def source() -> Iterator[Outgoing]:
        yield message(0)
        yield message(1)
        raise RuntimeError("compose broke")

    ledger = MemoryLedger()
    with pytest.raises(RuntimeError, match="compose broke"):
        smtp(smtp_server, connections=1).send(source(), ledger, clock=clock)
    assert set(ledger.claims) <= {"user0@example.org", "user1@example.org"}
    assert all(s is Delivery.SENT for s in ledger.state.values())


def test_a_recipient_listed_twice_gets_one_message(smtp_server: SmtpServer) -> None:
    report = smtp(smtp_server).send([message(0), message(1), message(0)], BatchLedger(), clock=clock)

    assert (report.sent, report.skipped) == (2, 1)
    assert len(smtp_server.received("user0@example.org")) == 1


@pytest.mark.parametrize(
    ("raw", "stuffed"),
    [
        (b".top\r\nmid\r\n.dot\r\n..two\r\nend.\r\n", b"..top\r\nmid\r\n..dot\r\n...two\r\nend.\r\n"),
        (b"no dots\r\n", b"no dots\r\n"),
        (b"", b""),
        (b".", b".."),
    ],
)
def test_dot_stuffing_doubles_only_line_leading_dots(raw: bytes, stuffed: bytes) -> None:
    assert dot_stuff(raw) == stuffed
