"""What an SMTP refusal says: a problem of this recipient, or of us.

A refusal is about the *recipient* (the mailbox does not exist, is
disabled, moved: RFC 3463 5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10, 5.2.1) or
about *us* (our sender address, our reputation, policy, protocol, a relay
that will not relay: 5.1.7, 5.1.8, 5.7.x, 5.5.x, "relay access denied"),
or neither (a full mailbox, a message too big, a network problem). Only
the first kind may mark a subscriber bounced. A reply without an enhanced
code is read from its basic code and words, conservatively: it counts as
about the recipient only when the words say so and say nothing of us.

``RefusalWatch`` notices a relay that refuses us for every recipient (the
same permanent refusal for 10 in a row, or for more than a fifth of the
first 50), so the run stops instead of failing the whole list.
``mark_bounces`` marks bounced, after a send, the subscribers whose
address the server said does not exist.

    >>> classify(550, "5.1.8 sender address rejected").kind
    <Kind.US: 'us'>
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from digest.models import Delivery, SubscriberStatus

if TYPE_CHECKING:  # the send stage sees the store only through what it is handed
    from digest.store import Store


#: Said in the ledger of a row made due again because the relay refused us, not them.
REFUSED_US = "the relay refuses us; due again"


class Kind(StrEnum):
    """Whose problem a refusal is."""

    RECIPIENT = "recipient"
    US = "us"
    OTHER = "other"


#: RFC 3463 enhanced status codes that say the address itself is bad.
RECIPIENT_CODES = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"})
#: ... and those about our sender address (5.1.7 bad syntax, 5.1.8 bad domain).
SENDER_CODES = frozenset({"5.1.7", "5.1.8"})

# The first enhanced code of a reply ("550 5.1.1 <x>: user unknown", or "550-5.1.1 ..." joined).
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")

# Postfix "Relay access denied", Exchange "Unable to relay", Sendmail "Relaying denied",
# qmail "not in my list of allowed rcpthosts". "User unknown in relay recipient table"
# (Postfix) names a relay but is about one recipient, so "relay" alone is not enough.
_RELAY = re.compile(r"\brelay", re.IGNORECASE)
_REFUSAL = re.compile(r"\bden(?:y|ied)\b|\bnot\s+permitted\b|\bunable\b|\baccess\b", re.IGNORECASE)
_RCPTHOSTS = re.compile(r"allowed\s+rcpthosts", re.IGNORECASE)

#: Words of a reply without an enhanced code that say the mailbox does not exist.
_NO_SUCH_MAILBOX = re.compile(
    r"user unknown|unknown (user|recipient|mailbox)|no such (user|mailbox|recipient|address)|does not exist"
    r"|mailbox (unavailable|not found|disabled)|address rejected: user|recipient (address )?rejected",
    re.IGNORECASE,
)
#: Words that make a reply about us after all (a sender, spam or policy block also comes as 550).
_ABOUT_US = re.compile(
    r"\bsender\b|\bspam\b|\bpolicy\b|\bblock(ed|list)?\b|\bblacklist|\breputation\b|\bauthenticat"
    r"|\bdmarc\b|\bspf\b|\bdkim\b|\brbl\b|\bdnsbl\b|\bnot (permitted|allowed)\b|\brate\b|\bdenied\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply, read: its basic code, enhanced code (if any) and whose problem it is."""

    code: int
    enhanced: str | None
    text: str
    kind: Kind

    @property
    def key(self) -> str:
        """What makes two refusals "the same": the enhanced code, else the basic code."""
        return self.enhanced or str(self.code)


def relay_denied(text: str) -> bool:
    """Whether a reply says the server will not relay mail for us at all."""
    return bool(_RCPTHOSTS.search(text) or (_RELAY.search(text) and _REFUSAL.search(text)))


def enhanced_code(text: str) -> str | None:
    """The first RFC 3463 enhanced status code in ``text`` ("5.1.1"), if any."""
    m = _ENHANCED.search(text)
    # Normalised ("5.01.001" is 5.1.1) so that equal codes compare equal.
    return f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}" if m else None


def classify(code: int, text: str) -> Reply:
    """Read a reply's basic ``code`` and ``text`` (the words after the code)."""
    words = " ".join(text.split())
    enhanced = enhanced_code(words)
    return Reply(code, enhanced, words, _kind(code, enhanced, words))


def _kind(code: int, enhanced: str | None, words: str) -> Kind:
    if relay_denied(words):
        return Kind.US
    if enhanced is not None and enhanced[0] == str(code)[0]:
        subject = enhanced.split(".")[1]
        if enhanced in RECIPIENT_CODES:
            return Kind.RECIPIENT
        if enhanced in SENDER_CODES or subject in ("5", "7"):
            return Kind.US
        return Kind.OTHER
    # No (consistent) enhanced code: only the words can tell, and a doubt is not a bounce.
    if code in (550, 551, 553) and _NO_SUCH_MAILBOX.search(words) and not _ABOUT_US.search(words):
        return Kind.RECIPIENT
    if code >= 500 and _ABOUT_US.search(words):
        return Kind.US
    return Kind.OTHER


def bounced_by(code: int | None, error: str) -> bool:
    """Whether a permanent refusal recorded as ``code`` and ``error`` proves the address gone."""
    if code is None or code < 500:
        return False
    # The recorded error reads "<stage> refused: <code> <text>": classify the reply part.
    _, sep, rest = error.partition(f"{code} ")
    return classify(code, rest if sep else error).kind is Kind.RECIPIENT


def mark_bounces(store: Store, issue_key: str, now: dt.datetime) -> list[str]:
    """Mark subscribers bounced whose address the server said does not exist.

    Later issues skip them; a sender, spam or policy refusal (also a 550) is not a bounce.
    """
    bounced = [
        row.email
        for row in store.deliveries(issue_key, Delivery.FAILED_PERMANENT)
        if bounced_by(row.last_code, row.last_error or "")
    ]
    for email in bounced:
        store.set_status(email, SubscriberStatus.BOUNCED, now, f"bounce: issue {issue_key}")
    return bounced


class RefusalWatch:
    """Tells when the same permanent refusal keeps coming: the relay refuses us, not them.

    Fed every outcome in the order they complete (from several threads).
    ``observe`` returns, once the run must stop, the recipients refused in
    that streak (to be made due again: it was us being refused); after that
    every later refusal with the same key is returned too.
    """

    def __init__(self, *, streak: int = 10, window: int = 50, share: float = 0.2) -> None:
        self.streak, self.window, self.share = streak, window, share
        self._lock = threading.Lock()
        self._seen = 0
        self._run_key: str | None = None
        self._run: list[str] = []
        self._early: dict[str, list[str]] = {}
        self.tripped: str | None = None

    def observe(self, email: str, reply: Reply | None) -> list[str]:
        """Record one outcome (``None``: not a permanent refusal); the rows to release, if any."""
        with self._lock:
            key = reply.key if reply is not None else None
            if self.tripped is not None:
                return [email] if key == self.tripped else []
            self._seen += 1
            if key is None or key != self._run_key:
                self._run_key, self._run = key, []
            if key is None:
                return []
            self._run.append(email)
            early = self._early.setdefault(key, []) if self._seen <= self.window else None
            if early is not None:
                early.append(email)
            if len(self._run) >= self.streak:
                self.tripped = key
                return list(dict.fromkeys([*self._run, *(early or [])]))
            if early is not None and len(early) > self.share * self.window:
                self.tripped = key
                return list(early)
            return []
