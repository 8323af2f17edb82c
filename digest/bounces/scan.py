"""Scan the bounce mailbox: identify whom each message is about, record it, act on scores.

Identification, in order: the VERP tag of the address the mailbox got it
at; the recipients a DSN names (RFC 3464 ``Final-Recipient`` /
``Original-Recipient``) or Exim's ``X-Failed-Recipients``; the original
Message-ID quoted in the report (deterministic per issue and address); for
a feedback report (RFC 5965), its recipients or Message-ID. Only an
address with a ledger row for that issue is acted on: a forged bounce for
anyone else is logged and ignored. Each mailbox message is isolated: one
that cannot be read is counted and set aside, and the scan goes on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from digest.bounces.classify import BounceSettings, Verdict, classify, score
from digest.bounces.mailbox import Mailbox
from digest.bounces.report import Failure, Kind, Report, read_report
from digest.bounces.verp import tag_of
from digest.models import SubscriberStatus
from digest.store import BounceEvent, Store

log = logging.getLogger(__name__)

#: ``message_id(issue_key, email)`` as compose makes it, to match a quoted original.
MessageIdOf = Callable[[str, str], str]


@dataclass(frozen=True, slots=True)
class ScanSettings:
    """What the scanner needs besides the store: addresses, scoring, the Message-ID rule."""

    bounce_address: str = ""
    unsubscribe_address: str = ""
    scoring: BounceSettings = field(default_factory=BounceSettings)


@dataclass(slots=True)
class ScanResult:
    """What a scan found and did; ``lines`` say it per message."""

    read: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    bounced: list[str] = field(default_factory=list)
    complained: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def scan(
    mailbox: Mailbox,
    store: Store,
    settings: ScanSettings,
    message_id_of: MessageIdOf,
    now: dt.datetime,
    *,
    dry_run: bool = False,
) -> ScanResult:
    """Read every new message of ``mailbox``; record and act unless ``dry_run``."""
    result = ScanResult()
    for key, data in mailbox.messages():
        result.read += 1
        try:
            _one(key, data, store, settings, message_id_of, now, dry_run, result)
        except Exception as exc:
            result.counts["unreadable"] += 1
            result.lines.append(f"{key}: unreadable ({type(exc).__name__}: {exc})")
            log.warning("bounce message %s: %s: %s", key, type(exc).__name__, exc)
        if not dry_run:
            mailbox.done(key)
    return result


def _issue_from_id(
    store: Store, message_id: str, email: str | None, message_id_of: MessageIdOf
) -> list[tuple[str, str]]:
    """``(issue, email)`` pairs whose message has ``message_id``."""
    left = message_id.strip("<>").partition(".")[0]
    hits = []
    for issue_key in _candidate_issues(store, left, email):
        emails = [email] if email else store.ledger_emails(issue_key)
        hits += [(issue_key, e) for e in emails if message_id_of(issue_key, e) == message_id]
    return hits


def _candidate_issues(store: Store, left: str, email: str | None) -> list[str]:
    keys = store.ledger_issues_of(email) if email else [s.key for s in store.issue_summaries()]
    # compose puts the issue key (punctuation folded to "-") before the dot.
    return [
        k for k in keys if k == left or "".join(c if c.isalnum() or c in "_-" else "-" for c in k).strip("-") == left
    ]


def _one(
    key: str,
    data: bytes,
    store: Store,
    settings: ScanSettings,
    message_id_of: MessageIdOf,
    now: dt.datetime,
    dry_run: bool,
    result: ScanResult,
) -> None:
    report = read_report(data)
    ref = hashlib.sha256(data).hexdigest()
    verp = _verp(store, report, settings)

    def act(email: str, issue_key: str, verdict: Verdict, status: str, detail: str) -> None:
        if not store.ledger_has(issue_key, email):
            result.counts["forged"] += 1
            result.lines.append(f"{key}: {email} has no message of issue {issue_key}; ignored")
            log.info("bounce for %s (issue %s) without a ledger row: ignored", email, issue_key)
            return
        result.counts[str(verdict)] += 1
        result.lines.append(f"{key}: {email} {verdict} {status} (issue {issue_key})".rstrip())
        if dry_run:
            return
        store.record_bounce(ref, BounceEvent(email, issue_key, str(verdict), status, detail, now))
        if verdict in (Verdict.HARD, Verdict.SOFT):
            events = [(e.at, Verdict(e.verdict)) for e in store.bounce_events(email)]
            if score(events, settings.scoring) >= settings.scoring.threshold and store.set_status(
                email, SubscriberStatus.BOUNCED, now, f"bounces: {status or verdict} (issue {issue_key})"
            ):
                result.bounced.append(email)

    if report.kind is Kind.DSN:
        for failure in report.failures:
            whom = _whom(store, report, failure, verp, message_id_of)
            for email, issue_key in whom:
                act(email, issue_key, classify(failure), failure.status, failure.diagnostic)
            if not whom:
                result.counts["unidentified"] += 1
                result.lines.append(f"{key}: a delivery report about nobody we sent to; ignored")
        return
    if report.kind is Kind.FEEDBACK:
        targets = _feedback_targets(store, report, verp, message_id_of)
        if report.feedback_type != "abuse":
            result.counts["feedback-other"] += 1
            result.lines.append(f"{key}: feedback report {report.feedback_type or '?'}; nothing to do")
            return
        if not targets:
            result.counts["unidentified"] += 1
            result.lines.append(f"{key}: a complaint about nobody we sent to; ignored")
        for email, issue_key in targets:
            if not store.ledger_has(issue_key, email):
                act(email, issue_key, Verdict.IGNORED, "", "")  # counted and logged as forged
                continue
            result.counts["complaint"] += 1
            result.lines.append(f"{key}: {email} complained (issue {issue_key}); unsubscribed")
            if not dry_run:
                store.record_bounce(ref, BounceEvent(email, issue_key, "complaint", "", "abuse", now))
                if store.set_status(
                    email, SubscriberStatus.COMPLAINED, now, f"complaint (issue {issue_key})", force=True
                ):
                    result.complained.append(email)
        return
    if _to_unsubscribe(report, settings) and report.sender:
        issues = store.ledger_issues_of(report.sender)
        if not issues:
            result.counts["forged"] += 1
            result.lines.append(f"{key}: unsubscribe mail from {report.sender}, who was never sent anything; ignored")
            return
        result.counts["unsubscribe"] += 1
        result.lines.append(f"{key}: {report.sender} unsubscribed by mail")
        if not dry_run:
            store.record_bounce(ref, BounceEvent(report.sender, issues[0], "unsubscribe", "", "mailto", now))
            if store.set_status(report.sender, SubscriberStatus.UNSUBSCRIBED, now, "mailto"):
                result.unsubscribed.append(report.sender)
        return
    result.counts["autoreply" if report.kind is Kind.AUTOREPLY else "other"] += 1
    result.lines.append(f"{key}: {'auto-reply' if report.kind is Kind.AUTOREPLY else 'not a report'}; ignored")


def _verp(store: Store, report: Report, settings: ScanSettings) -> tuple[str, str] | None:
    if not settings.bounce_address:
        return None
    for address in report.envelope_to:
        tag = tag_of(address, settings.bounce_address)
        if tag is not None:
            hit = store.verp_lookup(tag)
            if hit is not None:
                return hit
    return None


def _whom(
    store: Store, report: Report, failure: Failure, verp: tuple[str, str] | None, message_id_of: MessageIdOf
) -> list[tuple[str, str]]:
    """``(email, issue)`` pairs a failure is about."""
    if verp is not None:
        issue_key, email = verp
        if not failure.recipient or failure.recipient == email:
            return [(email, issue_key)]
    for mid in report.original_ids:
        hits = _issue_from_id(store, mid, failure.recipient or None, message_id_of)
        if hits:
            return [(e, k) for k, e in hits]
    if failure.recipient:
        issues = store.ledger_issues_of(failure.recipient)
        # No tag and no quoted original: the newest issue they were sent. Never an address we did not mail.
        return [(failure.recipient, issues[0])] if issues else [(failure.recipient, "?")]
    return []


def _feedback_targets(
    store: Store, report: Report, verp: tuple[str, str] | None, message_id_of: MessageIdOf
) -> list[tuple[str, str]]:
    if verp is not None:
        return [(verp[1], verp[0])]
    for mid in report.original_ids:
        hits = _issue_from_id(store, mid, None, message_id_of)
        if hits:
            return [(e, k) for k, e in hits]
    out = []
    for email in report.feedback_recipients:
        issues = store.ledger_issues_of(email)
        out.append((email, issues[0] if issues else "?"))
    return out


def _to_unsubscribe(report: Report, settings: ScanSettings) -> bool:
    target = settings.unsubscribe_address.strip().lower().removeprefix("mailto:").partition("?")[0]
    return bool(target) and target in report.envelope_to
