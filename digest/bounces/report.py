"""One message from the bounce mailbox → what it reports, before anyone is identified.

Reads delivery status notifications (RFC 3464 ``multipart/report;
report-type=delivery-status``), feedback reports (RFC 5965 ARF,
``report-type=feedback-report``), Exim's ``X-Failed-Recipients``,
Exchange-style notices that only quote the original Message-ID, auto-replies
and plain mail (a ``mailto:`` unsubscribe). Every message is hostile input:
it is size-capped, parsed with the standard library, and a part that does
not parse is skipped, never the message.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, replace
from email.message import Message
from email.utils import getaddresses, parseaddr
from enum import StrEnum

#: A message over this size is not a bounce worth reading (the original is at most quoted).
MAX_BYTES = 5_000_000
#: RFC 3463 enhanced status codes: class.subject.detail.
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_MESSAGE_ID = re.compile(r"Message-ID:\s*(<[^<>\s]{1,250}>)", re.IGNORECASE)
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")


class Kind(StrEnum):
    DSN = "dsn"
    FEEDBACK = "feedback"
    AUTOREPLY = "autoreply"
    PLAIN = "plain"


@dataclass(frozen=True, slots=True)
class Failure:
    """One recipient a report names: ``action`` (failed, delayed, ...) and the RFC 3463 ``status``."""

    recipient: str
    action: str
    status: str
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """What one mailbox message says, in plain values."""

    kind: Kind
    failures: tuple[Failure, ...] = ()
    original_ids: tuple[str, ...] = ()
    envelope_to: tuple[str, ...] = ()
    feedback_type: str = ""
    feedback_recipients: tuple[str, ...] = ()
    sender: str = ""
    subject: str = ""
    message_id: str = ""


def _parse(data: bytes) -> Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def _payload_text(part: Message) -> str:
    inner = part.get_payload()
    if isinstance(inner, list):  # message/* parts hold messages
        return "\n".join(p.as_string() for p in inner if isinstance(p, Message))
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    return str(payload or "")


def _fields(text: str) -> list[dict[str, str]]:
    """The field groups of a message/delivery-status or feedback-report body (blank-line separated)."""
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                groups.append(current)
            current, last = {}, ""
            continue
        if line[:1] in (" ", "\t") and last:
            current[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        last = name.strip().lower()
        current[last] = value.strip()
    if current:
        groups.append(current)
    return groups


def _address(field: str) -> str:
    """``rfc822; Ann@Example.org`` → ``ann@example.org``."""
    value = field.partition(";")[2] if ";" in field else field
    return parseaddr(value.strip())[1].strip().strip("<>").lower()


def _status_of(text: str) -> str:
    m = _STATUS.search(text)
    return ".".join(m.groups()) if m else ""


def _original_ids(msg: Message) -> tuple[str, ...]:
    """Message-IDs of the original the report quotes, in the order found."""
    found: dict[str, None] = {}
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            for mid in _MESSAGE_ID.findall(_payload_text(part)):
                found.setdefault(mid)
    if not found:
        for part in msg.walk():
            if part.get_content_maintype() == "text":
                for mid in _MESSAGE_ID.findall(_payload_text(part)):
                    found.setdefault(mid)
    for header in ("In-Reply-To", "References"):
        for mid in re.findall(r"<[^<>\s]{1,250}>", str(msg.get(header, ""))):
            found.setdefault(mid)
    return tuple(found)


def _envelope_to(msg: Message) -> tuple[str, ...]:
    """Where the mailbox got it: the VERP address lives here."""
    out: dict[str, None] = {}
    for header in ("Delivered-To", "X-Original-To", "Envelope-To", "To"):
        for _, addr in getaddresses([str(v) for v in msg.get_all(header, [])]):
            if addr:
                out.setdefault(addr.strip().lower())
    return tuple(out)


def _is_autoreply(msg: Message) -> bool:
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return True
    if msg.get("X-Autoreply") or msg.get("X-Autorespond"):
        return True
    if str(msg.get("Precedence", "")).strip().lower() in ("auto_reply", "bulk", "junk"):
        return True
    subject = str(msg.get("Subject", "")).lower()
    return subject.startswith(("out of office", "automatic reply", "auto:", "autoreply", "abwesenheit"))


def read_report(data: bytes) -> Report:
    """What ``data`` reports. Never raises on content: an unreadable message is a plain one."""
    msg = _parse(data[:MAX_BYTES])
    ctype = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "") or "").lower() if ctype == "multipart/report" else ""
    base = Report(
        Kind.PLAIN,
        original_ids=_original_ids(msg),
        envelope_to=_envelope_to(msg),
        sender=parseaddr(str(msg.get("From", "")))[1].lower(),
        subject=" ".join(str(msg.get("Subject", "")).split()),
        message_id=str(msg.get("Message-ID", "")).strip(),
    )
    if report_type == "feedback-report":
        return _feedback(msg, base)
    failures: list[Failure] = []
    if report_type == "delivery-status" or any(p.get_content_type() == "message/delivery-status" for p in msg.walk()):
        failures = _dsn_failures(msg)
    exim = [a.strip().lower() for v in msg.get_all("X-Failed-Recipients", []) for a in str(v).split(",") if a.strip()]
    if exim:
        text = _body_text(msg)
        status = _status_of(text) or "5.0.0"
        known = {f.recipient for f in failures}
        failures += [Failure(a, "failed", status, _diagnostic(text)) for a in exim if a not in known]
    if failures:
        return replace(base, kind=Kind.DSN, failures=tuple(failures))
    if _looks_like_notice(msg):
        # An Exchange-style notice: no machine-readable part, only the quoted original and a status in words.
        text = _body_text(msg)
        action = "delayed" if "delay" in text.lower() else "failed"
        return replace(base, kind=Kind.DSN, failures=(Failure("", action, _status_of(text), _diagnostic(text)),))
    if _is_autoreply(msg):
        return replace(base, kind=Kind.AUTOREPLY)
    return base


def _dsn_failures(msg: Message) -> list[Failure]:
    out: list[Failure] = []
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):  # the stdlib parses the field groups as sub-messages
            groups = [{k.lower(): str(v) for k, v in p.items()} for p in payload if isinstance(p, Message)]
        else:
            groups = _fields(_payload_text(part))
        for group in groups[1:] if len(groups) > 1 else groups:
            rcpt = group.get("original-recipient") or group.get("final-recipient") or ""
            final = group.get("final-recipient") or rcpt
            address = _address(final) or _address(rcpt)
            if not address:
                continue
            action = group.get("action", "").strip().lower()
            diagnostic = " ".join(group.get("diagnostic-code", "").split())
            status = _status_of(group.get("status", "")) or _status_of(diagnostic)
            out.append(
                Failure(address, action or ("failed" if status.startswith("5") else "delayed"), status, diagnostic)
            )
    return out


def _feedback(msg: Message, base: Report) -> Report:
    ftype = ""
    recipients: dict[str, None] = {}
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list):
                groups = [{k.lower(): str(v) for k, v in p.items()} for p in payload if isinstance(p, Message)]
            else:
                groups = _fields(_payload_text(part))
            for group in groups:
                ftype = ftype or group.get("feedback-type", "").strip().lower()
                for key in ("original-rcpt-to", "removal-recipient"):
                    if group.get(key):
                        recipients.setdefault(_address(group[key]))
        elif part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            quoted = _parse(_payload_text(part).encode("utf-8", "replace"))
            for _, addr in getaddresses([str(v) for v in quoted.get_all("To", [])]):
                if addr:
                    recipients.setdefault(addr.lower())
    return replace(base, kind=Kind.FEEDBACK, feedback_type=ftype, feedback_recipients=tuple(r for r in recipients if r))


def _body_text(msg: Message) -> str:
    texts = [_payload_text(p) for p in msg.walk() if p.get_content_type() == "text/plain"]
    return "\n".join(texts)[:200_000]


def _diagnostic(text: str) -> str:
    for line in text.splitlines():
        if _STATUS.search(line) or re.search(r"\b[45]\d\d\b", line):
            return " ".join(line.split())[:300]
    return ""


def _looks_like_notice(msg: Message) -> bool:
    """A delivery notice without a delivery-status part (Exchange, old qmail)."""
    sender = parseaddr(str(msg.get("From", "")))[1].lower()
    subject = str(msg.get("Subject", "")).lower()
    local = sender.partition("@")[0]
    from_daemon = local in ("mailer-daemon", "postmaster", "mail-daemon") or sender == ""
    words = ("undeliverable", "delivery status notification", "returned mail", "delivery has failed", "failure notice")
    return (from_daemon or any(w in subject for w in words)) and any(w in subject for w in (*words, "delivery"))


def addresses_in(text: str) -> tuple[str, ...]:
    """Every address-shaped string of ``text``, lowercased, first-seen order."""
    return tuple(dict.fromkeys(a.lower() for a in _ADDRESS.findall(text)))
