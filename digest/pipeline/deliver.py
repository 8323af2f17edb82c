"""Send an issue exactly once per subscriber: freeze, plan, claim, send, report."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from digest import grouping
from digest.codec import issue_from_json, issue_to_json
from digest.compose import MessageTemplate
from digest.config import Config
from digest.errors import BusyError, IssueHeld, SendError, TooFewEntries
from digest.models import (
    Delivery,
    IsoWeek,
    Outgoing,
    SubscriberStatus,
)
from digest.pipeline.carry import plan_issue
from digest.pipeline.gather import FetchLine, fetch_all
from digest.pipeline.issue import (
    Audience,
    Built,
    audience,
    build,
    check_size,
    compose_settings,
    make_issue,
    recipients,
    renderer_for,
    resolve_weeks,
    secret,
    selection,
)
from digest.send import MaildirSender, SendEvent, SendReport, make_sender
from digest.store import Store

log = logging.getLogger(__name__)


SEND_LOCK = "send"
LOCK_TTL = dt.timedelta(minutes=10)

# --- send ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendSummary:
    """What a send did: the sender's report plus what never reached it."""

    issue_key: str
    planned: int
    due: int
    no_match: int
    report: SendReport
    problems: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    outbox: Path | None = None
    counts: Mapping[Delivery, int] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.report.failed_permanent or self.report.failed_temporary or self.report.unknown)


def prepare(config: Config, store: Store, weeks: Sequence[IsoWeek], now: dt.datetime) -> Built:
    """The issue to send for ``weeks``: the frozen one if it exists, else built and frozen now.

    Freezing stores the issue's entries and rendered variants before anything
    is sent, so a re-run after a crash sends the same issue, not a newer one.
    """
    key = grouping.issue_key(weeks)
    frozen = store.frozen_issue(key)
    aud: Audience | None = None
    noted: tuple[str, ...] = ()
    if frozen is None:
        # --- carry: the issue takes earlier weeks' unsent entries; a thin week is held (see pipeline.carry)
        planned = plan_issue(config, store, weeks)
        issue = planned.issue
        try:
            check_size(config, issue)
        except IssueHeld:
            store.hold_issue(key, now, len(issue.entries))  # so later issues know the digest had started
            raise
        built = build(config, store, issue, now)
        # The entries it carried are recorded in the freeze's own transaction (store.freeze_issue).
        if store.freeze_issue(key, issue_to_json(issue), list(built.variants.values()), now, planned.records()):
            aud = built.audience  # the same lists, just read: no need to read and check them again
            noted = planned.warnings
        # --- end carry
        frozen = store.frozen_issue(key)
        assert frozen is not None
    issue = issue_from_json(frozen.payload)
    variants = {r.variant: r for r in frozen.variants}
    if aud is None:
        aud = audience(config, store, issue)
    missing = {v: selection(s, issue) for s, v in aud.assignments if v is not None and v not in variants}
    if missing:
        # A subscriber who joined after the freeze: render their variant from the frozen issue.
        extra = renderer_for(config).variants(issue, [sel or frozenset() for sel in missing.values()])
        # Stored like the first ones: re-runs send the same bytes and the web version exists.
        store.add_variants(issue.key, list(extra.values()))
        frozen = store.frozen_issue(issue.key)
        assert frozen is not None
        variants = {r.variant: r for r in frozen.variants}
    return Built(issue, variants, aud, frozen.frozen_at, aud.problems + noted)


class _MemoryLedger:
    """The ledger of a dry run: remembers nothing beyond the run."""

    def claim(self, issue_key: str, email: str, now: dt.datetime) -> bool:
        return True

    def mark_sent(self, issue_key: str, email: str, now: dt.datetime) -> None:
        pass

    def mark_failed(
        self,
        issue_key: str,
        email: str,
        now: dt.datetime,
        *,
        permanent: bool,
        code: int | None,
        error: str,
        next_attempt: dt.datetime | None,
    ) -> None:
        pass

    def mark_unknown(self, issue_key: str, email: str, now: dt.datetime, error: str) -> None:
        pass


class _StillSubscribed:
    """``should_send`` for the sender: drops anyone who unsubscribed (or bounced) mid-send.

    The unsubscribed set is re-read every ``every`` messages or ``interval``
    seconds, whichever comes first, so the cost stays one query per batch
    rather than one per subscriber, and a slow (rate-limited) send still
    notices an unsubscribe within about ``interval`` seconds.
    """

    def __init__(
        self,
        store: Store,
        issue_key: str,
        clock: Callable[[], dt.datetime],
        every: int = 50,
        interval: float = 1.0,
    ) -> None:
        self.store, self.issue_key, self.clock, self.every = store, issue_key, clock, every
        self.interval = interval
        self.seen = 0
        self.gone = self._inactive()
        self.read_at = time.monotonic()

    def _inactive(self) -> dict[str, SubscriberStatus]:
        return {e: st for e, st in self.store.subscriber_status().items() if st is not SubscriberStatus.ACTIVE}

    def __call__(self, msg: Outgoing) -> bool:
        self.seen += 1
        if self.seen % self.every == 0 or time.monotonic() - self.read_at >= self.interval:
            self.read_at = time.monotonic()
            self.gone = self._inactive()
        status = self.gone.get(msg.recipient.lower())
        if status is not None:
            self.store.mark_skipped(self.issue_key, msg.recipient, self.clock(), str(status))
            return False
        return True


def _owner_is_gone(owner: str) -> bool:
    """True when the lock ``owner`` names a process of this host that is no longer running.

    An owner from another host, or one that cannot be checked, counts as alive:
    its lock then only lapses after ``LOCK_TTL``.
    """
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # e.g. EPERM: it runs under another user
    return False


def send_issue(
    config: Config,
    store: Store,
    weeks: Sequence[IsoWeek],
    *,
    clock: Callable[[], dt.datetime],
    dry_run: bool = False,
    wait: bool = False,
    retry_failed: bool = False,
    progress: Callable[[SendEvent, int], None] | None = None,
) -> SendSummary:
    """Send the issue for ``weeks`` to every subscriber who has not had it yet.

    Idempotent: the ledger row of each (issue, subscriber) is claimed before
    SMTP and marked sent right after the 250, so a re-run, or a second run at
    the same time, never sends anyone the issue twice.
    """
    now = clock()
    if dry_run:
        return _dry_run(config, store, weeks, now, clock, progress)
    secret(config, strict=True)  # before anything is frozen or planned
    sender = make_sender(config.sender)  # a bad sender config is an error before any state changes
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    while not store.acquire_lock(SEND_LOCK, owner, clock(), LOCK_TTL):
        holder = store.lock_holder(SEND_LOCK, clock())
        if holder is not None and _owner_is_gone(holder):
            # A run killed on this host: its claims become 'unknown' below, its lock goes now.
            log.warning("send lock held by %s, which no longer runs; taking it over", holder)
            store.release_lock(SEND_LOCK, holder)
            continue
        if not wait:
            raise BusyError("another digest run is sending right now; try again later or pass --wait")
        time.sleep(1.0)
    try:
        built = prepare(config, store, weeks, clock())
        key = built.issue.key
        warnings = built.warnings + _unfinished_week(config, weeks, clock())
        store.release_stale_claims(key, clock())
        if config.sender.resend_unknown:
            store.requeue_unknown(key, clock())
        if retry_failed:
            store.requeue(key, (Delivery.FAILED_PERMANENT, Delivery.FAILED_TEMPORARY), clock())
        planned = store.plan_deliveries(key, [(s.email, v) for s, v in built.audience.assignments if v], clock())
        due = store.due_deliveries(key, clock())
        settings = compose_settings(config, built.date)
        templates = {k: MessageTemplate.build(r, settings) for k, r in built.variants.items()}
        people = {s.email.lower(): s for s, v in built.audience.assignments if v}
        make_recipient = recipients(config, strict=True)
        last_refresh = [time.monotonic()]

        def messages() -> Iterator[Outgoing]:
            for row in due:
                sub = people.get(row.email.lower())
                if sub is None or row.variant not in templates:
                    store.mark_skipped(key, row.email, clock(), "no longer on the list")
                    continue
                yield templates[row.variant].personalise(make_recipient(sub))

        def on_event(event: SendEvent) -> None:
            if time.monotonic() - last_refresh[0] > 60:
                store.refresh_lock(SEND_LOCK, owner, clock())
                last_refresh[0] = time.monotonic()
            if progress is not None:
                progress(event, len(due))

        report = sender.send(
            messages(),
            store,
            clock=clock,
            should_send=_StillSubscribed(store, key, clock),
            progress=on_event,
        )
        unknown = tuple(r.email for r in store.deliveries(key, Delivery.UNKNOWN))
        mark_bounces(store, key, clock())
        counts = store.delivery_counts(key)
        return SendSummary(key, planned, len(due), built.audience.no_match, report, warnings, unknown, None, counts)
    finally:
        store.release_lock(SEND_LOCK, owner)


#: A permanent refusal that says the mailbox does not exist (RFC 3463 5.1.x), not a policy block.
_NO_SUCH_MAILBOX = re.compile(
    r"\b5\.1\.[0-9]{1,3}\b|user unknown|unknown (user|recipient)|no such (user|mailbox|recipient)|does not exist",
    re.IGNORECASE,
)


def mark_bounces(store: Store, issue_key: str, now: dt.datetime) -> list[str]:
    """Mark subscribers bounced whose address the server said does not exist.

    Later issues skip them; a spam or policy refusal (also a 550) is not a bounce.
    """
    bounced = [
        row.email
        for row in store.deliveries(issue_key, Delivery.FAILED_PERMANENT)
        if row.last_code in (550, 551, 553) and _NO_SUCH_MAILBOX.search(row.last_error or "")
    ]
    for email in bounced:
        store.set_status(email, SubscriberStatus.BOUNCED, now, f"bounce: issue {issue_key}")
    return bounced


def _unfinished_week(config: Config, weeks: Sequence[IsoWeek], now: dt.datetime) -> tuple[str, ...]:
    """A note when the issue covers a week that is not over: the frozen issue will not grow."""
    last = max(weeks)
    if now < last.bounds(config.digest.tz)[1]:
        return (
            f"week {last} is not over yet: entries published later this week are not in this issue "
            "(it is frozen now); they go out with the next issue, marked as from last week",
        )
    return ()


def _dry_run(
    config: Config,
    store: Store,
    weeks: Sequence[IsoWeek],
    now: dt.datetime,
    clock: Callable[[], dt.datetime],
    progress: Callable[[SendEvent, int], None] | None,
) -> SendSummary:
    """Compose every message into a Maildir beside the outbox; no state changes."""
    key = grouping.issue_key(weeks)
    frozen = store.frozen_issue(key)
    issue = issue_from_json(frozen.payload) if frozen else make_issue(config, store, weeks)
    check_size(config, issue)
    built = build(config, store, issue, frozen.frozen_at if frozen else now)
    settings = compose_settings(config, built.date)
    templates = {k: MessageTemplate.build(r, settings) for k, r in built.variants.items()}
    outbox = config.sender.maildir.with_name(config.sender.maildir.name + "-dry-run")
    make_recipient = recipients(config)
    msgs = [templates[v].personalise(make_recipient(s)) for s, v in built.audience.assignments if v is not None]
    total = len(msgs)

    def on_event(event: SendEvent) -> None:
        if progress is not None:
            progress(event, total)

    report = MaildirSender(outbox).send(msgs, _MemoryLedger(), clock=clock, progress=on_event)
    return SendSummary(key, len(msgs), len(msgs), built.audience.no_match, report, built.warnings, (), outbox)


@dataclass(slots=True)
class RunReport:
    """What ``run`` did: the fetch, the due issue's send, and earlier issues it finished."""

    fetched: list[FetchLine]
    sent: SendSummary | None
    skipped: str = ""
    problems: list[str] = field(default_factory=list)
    resumed: list[SendSummary] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        bad = any(line.result.status in ("failed", "broken") for line in self.fetched)
        sends = [*self.resumed, *([self.sent] if self.sent is not None else [])]
        return 1 if bad or self.problems or any(s.failed for s in sends) else 0


def weeks_of(issue_key: str) -> tuple[IsoWeek, ...]:
    """The weeks an issue key names: ``2018-W02`` or ``2018-W01..2018-W03``."""
    first, _, last = issue_key.partition("..")
    start = IsoWeek.parse(first)
    return grouping.weeks_between(start, IsoWeek.parse(last)) if last else (start,)


def run(config: Config, store: Store, *, clock: Callable[[], dt.datetime], wait: bool = False) -> RunReport:
    """The cron one-shot: fetch, then send the issue that is due (the last complete week).

    Issues an earlier run left unfinished (the relay was down, the process
    was killed) are finished first, so a bad Monday never drops an issue.
    A send that stops (another run holds the lock, the relay refuses us) is
    reported, not raised, so the report still shows the fetch.
    """
    fetched = fetch_all(config, store, clock())
    weeks = resolve_weeks(config, clock())
    due_key = grouping.issue_key(weeks)
    report = RunReport(fetched, None)
    for key in store.unfinished_issues(clock()):
        if key == due_key:
            continue
        try:
            report.resumed.append(send_issue(config, store, weeks_of(key), clock=clock, wait=wait))
        except SendError as exc:
            report.problems.append(f"issue {key}: {exc}")
    try:
        report.sent = send_issue(config, store, weeks, clock=clock, wait=wait)
    except TooFewEntries as exc:
        report.skipped = str(exc)
    except SendError as exc:
        report.problems.append(f"issue {due_key}: {exc}")
    return report
