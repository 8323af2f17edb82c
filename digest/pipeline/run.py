"""The cron one-shot: fetch, finish what earlier runs left, send the due issue, prune once a day."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from digest import grouping
from digest.bounces import ScanResult
from digest.config import Config
from digest.errors import AwaitingApproval, BounceError, SendError, TooFewEntries
from digest.models import IsoWeek
from digest.pipeline.alerts import mail_alerts, source_alerts
from digest.pipeline.bounces import scan_bounces
from digest.pipeline.deliver import send_issue
from digest.pipeline.gather import FetchLine, fetch_all
from digest.pipeline.issue import resolve_weeks
from digest.pipeline.prune import prune_if_due
from digest.pipeline.summary import SendSummary
from digest.store import PruneCounts, Store


@dataclass(slots=True)
class RunReport:
    """What ``run`` did: the fetch, the due issue's send, and earlier issues it finished."""

    fetched: list[FetchLine]
    sent: SendSummary | None
    skipped: str = ""
    problems: list[str] = field(default_factory=list)
    resumed: list[SendSummary] = field(default_factory=list)
    #: What the bounce mailbox said before sending (None when no mailbox is configured).
    bounces: ScanResult | None = None
    #: Issues waiting for an editor's approval: "issue 2018-W02: waiting for approval since …" (not a failure).
    waiting: list[str] = field(default_factory=list)
    #: What the once-a-day prune did, when this run did it.
    pruned: PruneCounts | None = None

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


def run(
    config: Config,
    store: Store,
    *,
    clock: Callable[[], dt.datetime],
    wait: bool = False,
    interrupt: threading.Event | None = None,
) -> RunReport:
    """The cron one-shot: fetch, then send the issue that is due (the last complete week).

    Issues an earlier run left unfinished (the relay was down, the process
    was killed) are finished first, so a bad Monday never drops an issue.
    A send that stops (another run holds the lock, the relay refuses us) is
    reported, not raised, so the report still shows the fetch. Once
    ``interrupt`` is set, the send in progress finishes what is in flight
    and no further issue is started.
    """
    fetched = fetch_all(config, store, clock())
    weeks = resolve_weeks(config, clock())
    due_key = grouping.issue_key(weeks)
    report = RunReport(fetched, None)
    # A source that just reached [fetch] alert_after failures in a row: the editors hear of it once.
    report.problems += mail_alerts(config, source_alerts(config, store), clock)
    if config.bounces.mailbox:
        # Before sending, so an address that bounced or complained since the last issue gets no more.
        try:
            report.bounces = scan_bounces(config, store, clock())
        except BounceError as exc:
            report.problems.append(f"bounces: {exc}")
    stopped = interrupt.is_set if interrupt is not None else lambda: False
    # Issues waiting for approval are tried too: approved (or timed out) since, they go out now.
    for key in dict.fromkeys([*store.unfinished_issues(clock()), *store.awaiting_approval()]):
        if key == due_key:
            continue
        if stopped():
            return report
        try:
            report.resumed.append(send_issue(config, store, weeks_of(key), clock=clock, wait=wait, interrupt=interrupt))
        except AwaitingApproval as exc:
            report.waiting.append(str(exc))
        except SendError as exc:
            report.problems.append(f"issue {key}: {exc}")
    if stopped():
        return report
    try:
        report.sent = send_issue(config, store, weeks, clock=clock, wait=wait, interrupt=interrupt)
    except TooFewEntries as exc:
        report.skipped = str(exc)
    except AwaitingApproval as exc:
        report.waiting.append(str(exc))
    except SendError as exc:
        report.problems.append(f"issue {due_key}: {exc}")
    if not stopped():
        # After the send, so a prune never delays an issue.
        report.pruned = prune_if_due(config, store, clock())
    return report
