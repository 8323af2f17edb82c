"""Batches: an issue planned into lists of ledger rows, and one such list sent.

``plan_batches`` freezes and plans the issue as ``send_issue`` does, then
cuts the rows that are due into lists of ``[workers] batch_size``
addresses and hands them to a ``BatchQueue`` (the workers' job queue),
all under the ``send`` lock, so two plans never queue the same rows.
``BatchSender`` sends one list through the local sender with the local
ledger calls: the same claim before SMTP and the same marks after it, so a
list sent twice (a redelivered job, two workers racing) sends nothing twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from digest import grouping
from digest.compose import MessageTemplate
from digest.config import Config
from digest.errors import AwaitingApproval, SendError, TooFewEntries
from digest.models import Delivery, IsoWeek, Outgoing
from digest.pipeline import approval
from digest.pipeline.bounces import return_paths
from digest.pipeline.deliver import _plural, _StillSubscribed, human
from digest.pipeline.freeze import NO_LONGER_LISTED, plan, prepare
from digest.pipeline.gather import FetchLine, fetch_all
from digest.pipeline.issue import compose_settings, recipients, resolve_weeks, secret
from digest.pipeline.lease import LOCK_TTL, SendLease
from digest.pipeline.run import weeks_of
from digest.send import Sender, SendReport, make_sender
from digest.store import Store


class BatchQueue(Protocol):
    """Where batches go: ``active`` counts the issue's batches queued or running; ``put`` queues more."""

    def active(self, issue_key: str) -> int: ...

    def put(self, issue_key: str, batches: Sequence[tuple[str, ...]]) -> int: ...


@dataclass(frozen=True, slots=True)
class Planned:
    """What ``plan_batches`` did: rows added, rows due, batches queued (or already queued)."""

    issue_key: str
    planned: int
    due: int
    queued: int
    already_queued: int
    counts: dict[Delivery, int]
    warnings: tuple[str, ...] = ()


def cut(emails: Sequence[str], size: int) -> list[tuple[str, ...]]:
    """``emails`` in lists of at most ``size``, in order."""
    size = max(1, size)
    return [tuple(emails[i : i + size]) for i in range(0, len(emails), size)]


def plan_batches(
    config: Config,
    store: Store,
    weeks: Sequence[IsoWeek],
    queue: BatchQueue,
    *,
    clock: Callable[[], dt.datetime],
    wait: bool = False,
    retry_failed: bool = False,
    resend_unknown: bool = False,
    accept_list_change: bool = False,
    lock_ttl: dt.timedelta = LOCK_TTL,
) -> Planned:
    """Freeze and plan the issue of ``weeks``, then queue its due rows in batches.

    While batches of the issue are queued or running, nothing more is queued
    (their rows are still due, and would go out twice). Claims are left
    alone: live workers hold them (a dead worker's are released by the
    stalled-batch task, or by ``reconcile``).
    """
    secret(config, strict=True)  # before anything is frozen or planned
    sender = make_sender(config.sender)  # a bad sender config is an error before any state changes
    with SendLease(store, clock, wait=wait, ttl=lock_ttl):
        built = prepare(config, store, weeks, clock())
        key = built.issue.key
        # With [editorial] approval = "required": raises AwaitingApproval until the frozen bytes are approved.
        warnings = approval.gate(config, store, built, clock, sender)
        retry_for = config.sender.retry_for
        store.give_up(
            key, retry_for, clock(), lambda n: f"gave up after {_plural(n, 'try', 'tries')} over {human(retry_for)}"
        )
        if resend_unknown or config.sender.resend_unknown:
            store.requeue_unknown(key, clock())
        if retry_failed:
            store.requeue(key, (Delivery.FAILED_PERMANENT, Delivery.FAILED_TEMPORARY), clock())
        # Planned as a local send plans: an old issue never reaches people who joined after it.
        todo = plan(config, store, built, clock(), accept_list_change=accept_list_change)
        planned = store.plan_deliveries(key, todo.new, clock())
        store.replan_skipped(key, todo.back, NO_LONGER_LISTED, clock())
        due = store.due_deliveries(key, clock())
        active = queue.active(key)
        queued = 0
        if due and not active:
            queued = queue.put(key, cut([r.email for r in due], config.workers.batch_size))
        return Planned(key, planned, len(due), queued, active, store.delivery_counts(key), warnings + built.warnings)


@dataclass(slots=True)
class RunQueued:
    """What ``run_batches`` did: the fetch, each issue planned, and what stopped one."""

    fetched: list[FetchLine]
    planned: list[Planned] = field(default_factory=list)
    skipped: str = ""
    problems: list[str] = field(default_factory=list)
    #: Issues waiting for an editor's approval (not a failure).
    waiting: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        bad = any(line.result.status in ("failed", "broken") for line in self.fetched)
        return 1 if bad or self.problems else 0


def run_batches(
    config: Config, store: Store, queue: BatchQueue, *, clock: Callable[[], dt.datetime], wait: bool = False
) -> RunQueued:
    """``run`` with the workers: fetch, then queue the issues earlier runs left unfinished and the due one."""
    report = RunQueued(fetch_all(config, store, clock()))
    weeks = resolve_weeks(config, clock())
    due = grouping.issue_key(weeks)
    earlier = dict.fromkeys([*store.unfinished_issues(clock()), *store.awaiting_approval()])
    todo = [weeks_of(k) for k in earlier if k != due]
    for wk in [*todo, weeks]:
        try:
            report.planned.append(plan_batches(config, store, wk, queue, clock=clock, wait=wait))
        except TooFewEntries as exc:
            report.skipped = str(exc)
        except AwaitingApproval as exc:
            report.waiting.append(str(exc))
        except SendError as exc:
            report.problems.append(f"issue {grouping.issue_key(wk)}: {exc}")
    return report


class BatchSender:
    """Sends given ledger rows of one frozen issue (a batch) through the local sender.

    Built once per issue and process (the frozen issue, its message
    templates, who is on the list), then reused for every batch of the issue.
    Thread-safe: batches of one issue may be sent from several threads.
    """

    def __init__(self, config: Config, store: Store, issue_key: str, now: dt.datetime) -> None:
        # The key comes from a job in the queue: check it names an issue a send froze (never freeze one here).
        try:
            weeks_of(issue_key)
        except ValueError:
            raise SendError(f"a batch names no issue: {issue_key[:40]!r}", permanent=True) from None
        if store.frozen_issue(issue_key) is None:
            raise SendError(f"issue {issue_key} was never frozen: batches come from `digest send`", permanent=True)
        self.config, self.key = config, issue_key
        self._lock = threading.Lock()
        self._load(store, now)

    def _load(self, store: Store, now: dt.datetime) -> None:
        built = prepare(self.config, store, weeks_of(self.key), now)
        settings = compose_settings(self.config, built.date)
        templates = {k: MessageTemplate.build(r, settings) for k, r in built.variants.items()}
        people = {s.email.lower(): s for s, v in built.audience.assignments if v}
        with self._lock:
            self.templates, self.people = templates, people
            self.make_recipient = recipients(self.config, strict=True)

    def send(
        self,
        store: Store,
        emails: Sequence[str],
        sender: Sender,
        *,
        clock: Callable[[], dt.datetime],
        interrupt: threading.Event | None = None,
    ) -> SendReport:
        """Send the rows of ``emails`` that are due now, exactly as ``send_issue`` sends its rows."""
        key = self.key
        rows = store.due_among(key, emails, clock())
        if any(r.email not in self.people or r.variant not in self.templates for r in rows):
            self._load(store, clock())  # someone joined (or a variant appeared) since this issue was loaded
        templates, people, make_recipient = self.templates, self.people, self.make_recipient
        paths = return_paths(self.config, store, key, (r.email for r in rows))

        def messages() -> Iterator[Outgoing]:
            for row in rows:
                sub = people.get(row.email)
                if sub is None or row.variant not in templates:
                    store.mark_skipped(key, row.email, clock(), NO_LONGER_LISTED)
                    continue
                out = templates[row.variant].personalise(make_recipient(sub))
                yield dataclasses.replace(out, envelope_from=paths(out.recipient)) if paths else out

        return sender.send(
            messages(), store, clock=clock, should_send=_StillSubscribed(store, key, clock), interrupt=interrupt
        )
