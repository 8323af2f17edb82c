"""How the SMTP sender classifies refusals and broken connections (real aiosmtpd, injected faults)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from datetime import timedelta

import pytest

from digest.errors import SendError
from digest.models import Delivery
from digest.send import SendAborted, SmtpSender
from digest.send.session import SmtpSession
from digest.store import Store
from tests.fixtures.smtp_server import DISCONNECT, DISCONNECT_AFTER_DOT, SmtpServer
from tests.test_send import NOW, BatchLedger, MemoryLedger, clock, message, settings_for, smtp

A, B, C = "user0@example.org", "user1@example.org", "user2@example.org"


def test_451_on_rcpt_is_retried_then_sent(smtp_server: SmtpServer) -> None:
    smtp_server.inject("RCPT", 451, recipient=B)
    ledger = MemoryLedger()
    report = smtp(smtp_server).send([message(i) for i in range(3)], ledger, clock=clock)

    assert report.sent == 3 and report.failed == 0
    assert report.attempts == 4
    assert smtp_server.count("RCPT", B) == 2
    assert len(smtp_server.received(B)) == 1
    assert ledger.of(B) is Delivery.SENT


def test_temporary_failure_gives_up_after_max_attempts_with_a_next_attempt(smtp_server: SmtpServer) -> None:
    smtp_server.inject("RCPT", 451, recipient=A, times=None)
    ledger = MemoryLedger()
    sender = SmtpSender(settings_for(smtp_server, max_attempts=3), "b@example.org", backoff=0.001)
    report = sender.send([message(0), message(1)], ledger, clock=clock)

    assert (report.sent, report.failed_temporary) == (1, 1)
    assert smtp_server.count("RCPT", A) == 3
    assert ledger.of(A) is Delivery.FAILED_TEMPORARY
    failure = ledger.failures[("2018-W02", A)]
    assert failure["code"] == 451
    assert failure["next_attempt"] == NOW + timedelta(seconds=sender.delay(3))
    assert report.problems[0][:2] == (A, 451)


@pytest.mark.parametrize("command", ["RCPT", "DATA"])
def test_550_is_permanent_and_never_retried(smtp_server: SmtpServer, command: str) -> None:
    smtp_server.inject(command, 550, recipient=A)
    ledger = MemoryLedger()
    report = smtp(smtp_server).send([message(0), message(1)], ledger, clock=clock)

    assert (report.sent, report.failed_permanent, report.failed_temporary) == (1, 1, 0)
    assert smtp_server.count(command, A) == 1
    assert smtp_server.received(A) == []
    assert ledger.of(A) is Delivery.FAILED_PERMANENT
    assert ledger.failures[("2018-W02", A)]["next_attempt"] is None
    assert ledger.of(B) is Delivery.SENT


def test_552_is_treated_as_temporary(smtp_server: SmtpServer) -> None:
    smtp_server.inject("DATA", 552, recipient=A)
    ledger = MemoryLedger()
    report = smtp(smtp_server).send([message(0)], ledger, clock=clock)

    assert report.sent == 1
    assert smtp_server.count("DATA", A) == 2
    assert len(smtp_server.received(A)) == 1


def test_disconnect_before_the_dot_is_retried(smtp_server: SmtpServer) -> None:
    smtp_server.inject("DATA", DISCONNECT, recipient=A)
    ledger = MemoryLedger()
    report = smtp(smtp_server, connections=1).send([message(0), message(1)], ledger, clock=clock)

    assert report.sent == 2 and report.unknown == 0
    assert smtp_server.count("DATA", A) == 2
    assert len(smtp_server.received(A)) == 1
    assert smtp_server.connections == 2  # the lost session was replaced
    assert ledger.of(A) is Delivery.SENT


def test_disconnect_after_the_dot_is_unknown_and_not_resent(smtp_server: SmtpServer) -> None:
    smtp_server.inject("DATA", DISCONNECT_AFTER_DOT, recipient=A)
    ledger = MemoryLedger()
    report = smtp(smtp_server, connections=1).send([message(0), message(1)], ledger, clock=clock)

    assert (report.sent, report.unknown) == (1, 1)
    received = smtp_server.received(A)
    assert len(received) == 1 and received[0].replied is False  # the server did take it
    assert smtp_server.count("DATA", A) == 1
    assert ledger.of(A) is Delivery.UNKNOWN
    assert ledger.of(B) is Delivery.SENT
    assert report.problems[0][0] == A


def test_rset_after_a_failed_transaction_lets_the_next_one_through(smtp_server: SmtpServer) -> None:
    smtp_server.inject("RCPT", 550, recipient=A)
    smtp_server.inject("DATA", 554, recipient=B)
    msgs = [message(i) for i in range(3)]
    report = smtp(smtp_server, connections=1).send(msgs, MemoryLedger(), clock=clock)

    assert (report.sent, report.failed_permanent) == (1, 2)
    assert smtp_server.connections == 1
    assert smtp_server.count("RSET") == 2
    assert len(smtp_server.received(C)) == 1


def test_421_drops_the_session_and_retries_on_a_new_one(smtp_server: SmtpServer) -> None:
    smtp_server.inject("MAIL", 421, nth=1)
    report = smtp(smtp_server, connections=1).send([message(0)], MemoryLedger(), clock=clock)

    assert report.sent == 1 and report.attempts == 2
    assert len(smtp_server.received(A)) == 1


def test_login_with_good_credentials_sends(smtp_server_factory: Callable[..., SmtpServer]) -> None:
    server = smtp_server_factory(auth=("editor", "s3cret"))
    sender = smtp(server, username="editor", password="s3cret")
    report = sender.send([message(0), message(1)], MemoryLedger(), clock=clock)

    assert report.sent == 2 and len(server.messages) == 2


def test_refused_login_is_one_clear_error_for_the_run(smtp_server_factory: Callable[..., SmtpServer]) -> None:
    server = smtp_server_factory(auth=("editor", "s3cret"))
    ledger = MemoryLedger()
    with pytest.raises(SendError) as info:
        sender = smtp(server, username="editor", password="wrong")
        sender.send([message(i) for i in range(5)], ledger, clock=clock)

    assert "login as 'editor' refused" in str(info.value)
    assert info.value.code == 535
    assert ledger.claims == []  # nothing claimed: every message stays due
    assert server.messages == []


@pytest.mark.parametrize("claim_ahead", [True, False])
def test_missing_login_stops_the_run_failing_no_one(
    smtp_server_factory: Callable[..., SmtpServer], claim_ahead: bool
) -> None:
    server = smtp_server_factory(auth=("editor", "s3cret"))
    ledger = BatchLedger()
    with pytest.raises(SendAborted) as info:
        SmtpSender(settings_for(server, connections=1), "b@example.org", batch=4, claim_ahead=claim_ahead).send(
            [message(i) for i in range(4)], ledger, clock=clock
        )

    assert info.value.code == 530
    assert ledger.count(Delivery.FAILED_PERMANENT) == 0
    # The one tried (and, claiming ahead, the claimed rest) are released for the next run;
    # claiming one by one, the others were never claimed and stay pending.
    tried = 4 if claim_ahead else 1
    assert ledger.count(Delivery.FAILED_TEMPORARY) == tried
    assert all(f["next_attempt"] == NOW for f in ledger.failures.values())
    assert info.value.report.failed_temporary == tried


def test_sender_refused_at_mail_stops_the_run(smtp_server: SmtpServer) -> None:
    smtp_server.inject("MAIL", 550, times=None)
    ledger = MemoryLedger()
    with pytest.raises(SendAborted) as info:
        smtp(smtp_server, connections=1).send([message(i) for i in range(5)], ledger, clock=clock)

    assert info.value.code == 550
    assert smtp_server.count("MAIL") == 1
    assert ledger.count(Delivery.FAILED_PERMANENT) == 0
    assert ledger.claims == [A]


def test_unreachable_server_stops_the_run_without_claiming() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    server = SmtpServer()
    server.port = port
    ledger = MemoryLedger()
    with pytest.raises(SendAborted, match="cannot connect"):
        smtp(server, max_attempts=2).send([message(0), message(1)], ledger, clock=clock)
    assert ledger.claims == []


def test_real_store_ledger_records_every_outcome_and_a_rerun_sends_nothing_twice(
    smtp_server: SmtpServer, store: Store
) -> None:
    msgs = [message(i) for i in range(30)]
    store.plan_deliveries("2018-W02", [(m.recipient, "default") for m in msgs], NOW)
    smtp_server.inject("RCPT", 550, recipient=A)
    smtp_server.inject("DATA", DISCONNECT_AFTER_DOT, recipient=B)
    smtp_server.inject("RCPT", 451, recipient=C, times=None)
    report = smtp(smtp_server, connections=3).send(msgs, store, clock=clock)

    counts = store.delivery_counts("2018-W02")
    assert (report.sent, report.failed_permanent, report.unknown, report.failed_temporary) == (27, 1, 1, 1)
    assert counts[Delivery.SENT] == 27 and counts[Delivery.UNKNOWN] == 1
    assert counts[Delivery.FAILED_PERMANENT] == 1 and counts[Delivery.FAILED_TEMPORARY] == 1
    assert len(smtp_server.messages) == 28  # 27 answered, 1 taken without a reply

    again = smtp(smtp_server, connections=3).send(msgs, store, clock=clock)
    assert again.sent == 0
    assert len(smtp_server.messages) == 28  # nothing went out twice


RELAY_REFUSALS = [
    (554, "5.7.1 <user0@example.org>: Relay access denied"),  # Postfix
    (550, "5.7.1 Unable to relay"),  # Exchange
    (550, "relaying denied"),
    (553, "sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)"),  # qmail
    (454, "4.7.1 <user0@example.org>: Relay access denied"),  # Postfix, deferring
]


@pytest.mark.parametrize("pipelining", [False, True])
@pytest.mark.parametrize(("code", "text"), RELAY_REFUSALS)
def test_relay_refused_on_every_rcpt_stops_the_run_failing_no_one(
    smtp_server_factory: Callable[..., SmtpServer], code: int, text: str, pipelining: bool
) -> None:
    server = smtp_server_factory(pipelining=pipelining)
    server.inject("RCPT", code, text=text, times=None)
    ledger = MemoryLedger()
    with pytest.raises(SendAborted) as info:
        smtp(server, connections=1).send([message(i) for i in range(5)], ledger, clock=clock)

    err = info.value
    assert "relay" in str(err) and "\n" not in str(err)
    assert err.code == code
    assert ledger.count(Delivery.FAILED_PERMANENT) == 0
    assert ledger.claims == [A]  # the one tried is released; the rest were never claimed
    assert ledger.of(A) is Delivery.FAILED_TEMPORARY
    assert ledger.failures[("2018-W02", A)]["next_attempt"] == NOW
    assert server.count("RCPT") == 1  # no retries against a relay that will not relay
    assert server.messages == []


def test_relay_refused_at_mail_stops_the_run(smtp_server: SmtpServer) -> None:
    smtp_server.inject("MAIL", 451, text="4.7.1 relaying not permitted", times=None)
    ledger = MemoryLedger()
    with pytest.raises(SendAborted, match="relay"):
        smtp(smtp_server, connections=1).send([message(i) for i in range(3)], ledger, clock=clock)

    assert smtp_server.count("MAIL") == 1
    assert ledger.count(Delivery.FAILED_PERMANENT) == 0


def test_relay_refusal_leaves_every_row_for_the_next_run(
    smtp_server_factory: Callable[..., SmtpServer], store: Store
) -> None:
    msgs = [message(i) for i in range(6)]
    store.plan_deliveries("2018-W02", [(m.recipient, "default") for m in msgs], NOW)
    wrong = smtp_server_factory()
    wrong.inject("RCPT", 554, text="5.7.1 <user0@example.org>: Relay access denied", times=None)
    with pytest.raises(SendAborted, match="refuses to relay"):
        smtp(wrong, connections=2).send(msgs, store, clock=clock)

    counts = store.delivery_counts("2018-W02")
    assert counts[Delivery.FAILED_PERMANENT] == 0 and counts[Delivery.SENT] == 0
    assert counts[Delivery.PENDING] + counts[Delivery.FAILED_TEMPORARY] == 6

    right = smtp_server_factory()  # the relay set up for us: the next run sends everyone
    report = smtp(right, connections=2).send(msgs, store, clock=clock)
    assert report.sent == 6
    assert store.delivery_counts("2018-W02")[Delivery.SENT] == 6
    assert sorted(m.rcpt_tos[0] for m in right.messages) == sorted(m.recipient for m in msgs)


@pytest.mark.parametrize(
    "text",
    [
        "5.1.1 user unknown",
        # Postfix names a relay here, but the refusal is about this one recipient.
        "5.1.1 <user0@example.org>: Recipient address rejected: User unknown in relay recipient table",
    ],
)
def test_unknown_user_stays_one_recipients_permanent_failure(smtp_server: SmtpServer, text: str) -> None:
    smtp_server.inject("RCPT", 550, recipient=A, text=text)
    ledger = MemoryLedger()
    report = smtp(smtp_server).send([message(i) for i in range(3)], ledger, clock=clock)

    assert (report.sent, report.failed_permanent, report.failed_temporary) == (2, 1, 0)
    assert ledger.of(A) is Delivery.FAILED_PERMANENT
    assert ledger.of(B) is Delivery.SENT and ledger.of(C) is Delivery.SENT
    assert smtp_server.count("RCPT", A) == 1


def test_a_slow_reply_after_the_dot_is_waited_for(smtp_server: SmtpServer) -> None:
    # A content-scanning relay: answers the final dot later than the session timeout.
    smtp_server.inject("DATA", 250, recipient=A, delay=1.5)
    ledger = MemoryLedger()
    report = smtp(smtp_server, connections=1, timeout=1.0).send([message(0), message(1)], ledger, clock=clock)

    assert (report.sent, report.unknown, report.attempts) == (2, 0, 2)
    assert ledger.of(A) is Delivery.SENT and ledger.of(B) is Delivery.SENT
    received = smtp_server.received(A)
    assert len(received) == 1 and received[0].replied
    assert smtp_server.connections == 1  # the session outlived the wait


def test_the_session_timeout_is_back_after_the_final_reply(smtp_server: SmtpServer) -> None:
    session = SmtpSession(
        settings_for(smtp_server, timeout=1.0), b"b@example.org", "example.org", ssl.create_default_context()
    )
    try:
        session.deliver(message(0))
        assert session.client is not None and session.client.sock is not None
        assert session.client.sock.gettimeout() == 1.0
    finally:
        session.quit()
    assert len(smtp_server.received(A)) == 1
