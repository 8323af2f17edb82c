"""The two transactional mails of a sign-up: the confirmation request and the welcome.

They are not issues of the list: no List-Id, no List-Unsubscribe, no
Precedence: bulk (a receiver must not file a confirmation request as a
newsletter). Headers are folded with the same helpers as issues, so a name
typed into the form cannot add a header. ``deliver`` hands one message to
the configured ``[sender]`` (the same SMTP session code as issues, with
its security and login) and returns only once it was accepted.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from digest.compose.headers import MAX_NAME, MAX_SUBJECT, clean_text, domain_of, fold_address, fold_text
from digest.compose.message import POLICY
from digest.errors import SendError
from digest.models import Outgoing
from digest.send import MemoryLedger, Sender


def _message(from_: str, to_addr: str, to_name: str, subject: str, text: str, now: dt.datetime, kind: str) -> Outgoing:
    from_name, from_addr = parseaddr(from_)
    domain = domain_of(from_)
    msg = EmailMessage(policy=POLICY)
    msg.set_raw("From", fold_address("From", clean_text(from_name, MAX_NAME), from_addr))
    msg.set_raw("To", fold_address("To", clean_text(to_name, MAX_NAME), to_addr))
    msg.set_raw("Subject", fold_text("Subject", clean_text(subject, MAX_SUBJECT)))
    msg.set_raw("Date", format_datetime(now))
    mid = f"<{kind}.{secrets.token_hex(12)}@{domain}>"
    msg.set_raw("Message-ID", mid)
    # Sent by a program in answer to a request: auto-replies should not answer it (RFC 3834).
    msg.set_raw("Auto-Submitted", "auto-generated")
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    return Outgoing(kind, to_addr, mid, msg.as_bytes(policy=POLICY))


def notice(from_: str, to_addr: str, subject: str, text: str, now: dt.datetime, kind: str) -> Outgoing:
    """A plain transactional message (no List-* headers) for the operator or an editor."""
    return _message(from_, to_addr, "", subject, text, now, kind)


def confirmation(
    *,
    from_: str,
    site: str,
    to_addr: str,
    to_name: str,
    consent_text: str,
    confirm_url: str,
    ttl: dt.timedelta,
    now: dt.datetime,
) -> Outgoing:
    """The mail with the confirmation link; it quotes the consent text exactly."""
    hours = max(1, round(ttl.total_seconds() / 3600))
    text = (
        f"Hello{' ' + to_name if to_name else ''},\n\n"
        f"Someone, probably you, asked to subscribe this address to {site}.\n"
        "To confirm, open this link and press Confirm:\n\n"
        f"{confirm_url}\n\n"
        f"The link works for {hours} hours. By confirming you agree to this:\n\n"
        f"{consent_text}\n\n"
        "If you did not ask for this, ignore this message: nothing is sent to you\n"
        "unless you confirm, and the request is deleted.\n"
    )
    return _message(from_, to_addr, to_name, f"Confirm your subscription to {site}", text, now, "confirm")


def welcome(
    *,
    from_: str,
    site: str,
    to_addr: str,
    to_name: str,
    preferences_url: str,
    unsubscribe_url: str,
    latest_url: str | None,
    now: dt.datetime,
) -> Outgoing:
    """The mail sent once a subscription is confirmed."""
    latest = f"The latest issue is here:\n{latest_url}\n\n" if latest_url else ""
    text = (
        f"Hello{' ' + to_name if to_name else ''},\n\n"
        f"You are subscribed to {site}. The next issue comes to this address.\n\n"
        f"{latest}"
        f"Change your themes:\n{preferences_url}\n\n"
        f"Unsubscribe at any time:\n{unsubscribe_url}\n"
    )
    return _message(from_, to_addr, to_name, f"Welcome to {site}", text, now, "welcome")


def deliver(sender: Sender, msg: Outgoing, clock: Callable[[], dt.datetime]) -> None:
    """Send ``msg`` now; ``SendError`` unless the server accepted it."""
    ledger = MemoryLedger()
    sender.send([msg], ledger, clock=clock)
    if msg.recipient not in ledger.sent:
        raise SendError(f"the {msg.issue_key} mail to {msg.recipient} was not sent: {ledger.error or 'skipped'}")
