"""Send one issue exactly once per subscriber: plan the ledger, claim, send, report.

The issue comes frozen from ``freeze.prepare``; the ``send`` lock from
``lease.SendLease``; a dry run goes to ``dryrun.dry_run`` instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from digest.compose import MessageTemplate
from digest.config import Config
from digest.models import Delivery, IsoWeek, Outgoing, SubscriberStatus
from digest.pipeline import approval, dryrun
from digest.pipeline.bounces import return_paths
from digest.pipeline.freeze import NO_LONGER_LISTED, plan, prepare
from digest.pipeline.issue import compose_settings, recipients, secret
from digest.pipeline.lease import LOCK_TTL, SendLease
from digest.pipeline.summary import SendSummary
from digest.send import SendEvent, make_sender
from digest.send.replies import REFUSED_US, mark_bounces
from digest.store import Store
from digest.subscribers import email_key


class _StillSubscribed:
    """``should_send`` for the sender: drops anyone who unsubscribed (or bounced) mid-send.

    The statuses are checked again every ``every`` messages or ``interval``
    seconds, whichever comes first, so a slow (rate-limited) send still
    notices an unsubscribe within about ``interval`` seconds. A check reads
    only the status history's new tail (``store.status_changes``) and the
    statuses of the addresses in it, so it costs the same with a million
    stored statuses as with none. An address about to be skipped has its
    status read once more (a confirmed sign-up or an erasure removes a
    status without history), and every ``full`` seconds the inactive
    statuses are read whole again (PostgreSQL may commit history rows out
    of their order).
    """

    def __init__(
        self,
        store: Store,
        issue_key: str,
        clock: Callable[[], dt.datetime],
        every: int = 50,
        interval: float = 1.0,
        full: float = 60.0,
    ) -> None:
        self.store, self.issue_key, self.clock, self.every = store, issue_key, clock, every
        self.interval, self.full = interval, full
        self.seen = 0
        self._reread()

    def _reread(self) -> None:
        self.mark = self.store.status_mark()  # before the read: a change in between is read again, no harm
        self.gone = self.store.inactive_statuses()
        self.read_at = self.full_at = time.monotonic()

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self.full_at >= self.full:
            self._reread()
            return
        self.read_at = now
        self.mark, changed = self.store.status_changes(self.mark)
        if changed:
            current = self.store.subscriber_status(changed)
            for email in changed:
                status = current.get(email, SubscriberStatus.ACTIVE)
                if status is SubscriberStatus.ACTIVE:
                    self.gone.pop(email, None)
                else:
                    self.gone[email] = status

    def __call__(self, msg: Outgoing) -> bool:
        self.seen += 1
        if self.seen % self.every == 0 or time.monotonic() - self.read_at >= self.interval:
            self._refresh()
        key = msg.recipient.lower()
        if key in self.gone:
            # Read again for this address now: a status erased since (a confirmed sign-up, an erasure)
            # leaves no history, and skipping is for good.
            status = self.store.subscriber_status([key]).get(key, SubscriberStatus.ACTIVE)
            if status is SubscriberStatus.ACTIVE:
                del self.gone[key]
                return True
            self.store.mark_skipped(self.issue_key, msg.recipient, self.clock(), str(status))
            return False
        return True


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
    lock_ttl: dt.timedelta = LOCK_TTL,
    resend_unknown: bool = False,
    accept_list_change: bool = False,
    interrupt: threading.Event | None = None,
) -> SendSummary:
    """Send the issue for ``weeks`` to every subscriber who has not had it yet.

    Idempotent: the ledger row of each (issue, subscriber) is claimed before
    SMTP and marked sent right after the 250, so a re-run, or a second run at
    the same time, never sends anyone the issue twice. Once ``interrupt``
    is set (SIGTERM, Ctrl-C) the transactions in flight finish and are
    recorded, nothing new is claimed, and the summary says so.
    ``resend_unknown`` (or ``[sender] resend_unknown``) sends the rows in
    doubt again, with the same Message-ID. ``freeze.plan`` says who is
    added (``accept_list_change`` lets a send go on after the list lost
    over half the issue's recipients).
    """
    now = clock()
    if dry_run:
        return dryrun.dry_run(config, store, weeks, now, clock, progress)
    secret(config, strict=True)  # before anything is frozen or planned
    sender = make_sender(config.sender)  # a bad sender config is an error before any state changes
    with SendLease(store, clock, wait=wait, ttl=lock_ttl) as lease:
        built = prepare(config, store, weeks, clock())
        key = built.issue.key
        # With [editorial] approval = "required": raises AwaitingApproval until the frozen bytes are approved.
        warnings = approval.gate(config, store, built, clock, sender)
        warnings += built.warnings + _unfinished_week(config, weeks, clock())
        resend = resend_unknown or config.sender.resend_unknown
        doubted = set() if resend else {r.email for r in store.deliveries(key, Delivery.UNKNOWN)}
        store.release_stale_claims(key, clock())
        retry_for = config.sender.retry_for
        store.give_up(
            key, retry_for, clock(), lambda n: f"gave up after {_plural(n, 'try', 'tries')} over {human(retry_for)}"
        )
        if resend:
            store.requeue_unknown(key, clock())
        if retry_failed:
            store.requeue(key, (Delivery.FAILED_PERMANENT, Delivery.FAILED_TEMPORARY), clock())
        todo = plan(config, store, built, clock(), accept_list_change=accept_list_change)
        planned = store.plan_deliveries(key, todo.new, clock())
        store.replan_skipped(key, todo.back, NO_LONGER_LISTED, clock())
        del todo  # a row per subscriber: not kept through the send
        due_at = clock()
        total = store.due_count(key, due_at)
        # The due rows are read a page at a time as the send takes them (a million rows held at once cost
        # more time and memory than the rest of the set-up). Rows the relay refused in a streak last time go
        # last: if it was a few recipients after all (one domain that refuses us, say), everyone else is
        # sent before they stop the run again.
        due = store.iter_due(key, due_at, last=REFUSED_US)
        settings = compose_settings(config, built.date)
        templates = {k: MessageTemplate.build(r, settings) for k, r in built.variants.items()}
        people = {email_key(s.email): s for s, v in built.audience.assignments if v}
        make_recipient = recipients(config, strict=True)
        paths = return_paths(config, store, key, (email for email, _ in store.iter_due(key, due_at)))

        def messages() -> Iterator[Outgoing]:
            for email, variant in due:
                sub = people.get(email)  # the ledger's addresses are lowercased already
                if sub is None or variant not in templates:
                    store.mark_skipped(key, email, clock(), NO_LONGER_LISTED)
                    continue
                out = templates[variant].personalise(make_recipient(sub))
                yield dataclasses.replace(out, envelope_from=paths(out.recipient)) if paths else out

        def on_event(event: SendEvent) -> None:
            if progress is not None:
                progress(event, total)

        report = sender.send(
            messages(),
            store,
            clock=clock,
            should_send=_StillSubscribed(store, key, clock),
            progress=on_event,
            interrupt=interrupt,
        )
        if lease.lost is not None:
            warnings += (f"the send lock was lost during the send ({lease.lost}): another run may have sent too",)
        left_unknown = store.deliveries(key, Delivery.UNKNOWN)
        unknown = tuple(r.email for r in left_unknown)
        in_doubt = tuple((r.email, r.last_error or "") for r in left_unknown)
        new_doubts = sum(1 for r in left_unknown if r.email not in doubted)
        mark_bounces(store, key, clock())
        counts = store.delivery_counts(key)
        stopped = interrupt is not None and interrupt.is_set()
        return SendSummary(
            key,
            planned,
            total,
            built.audience.no_match,
            report,
            warnings,
            unknown,
            None,
            counts,
            in_doubt,
            new_doubts,
            stopped,
        )


def _unfinished_week(config: Config, weeks: Sequence[IsoWeek], now: dt.datetime) -> tuple[str, ...]:
    """A note when the issue covers a week that is not over: the frozen issue will not grow."""
    last = max(weeks)
    if now < last.bounds(config.digest.tz)[1]:
        return (
            f"week {last} is not over yet: entries published later this week are not in this issue "
            "(it is frozen now); they go out with the next issue, marked as from last week",
        )
    return ()


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def human(span: dt.timedelta) -> str:
    """A duration as people say it, in its largest whole unit: "3 days", "36 hours", "90 minutes"."""
    seconds = int(span.total_seconds())
    for size, one, many in ((86400, "day", "days"), (3600, "hour", "hours"), (60, "minute", "minutes")):
        if seconds >= size and seconds % size == 0:
            return _plural(seconds // size, one, many)
    return _plural(seconds, "second", "seconds")
