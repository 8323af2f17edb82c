"""What an operator asks of the workers: ``digest status`` and ``digest reconcile``.

``issue_status`` puts the ledger's counts beside the issue's batches in the
queue (queued, running and on which worker, failed). ``reconcile`` makes
the ledger and the queue agree again after trouble: claims that no running
batch holds are marked in doubt, the rows still due are queued, and with
``resend_in_doubt`` the rows in doubt are sent again (same Message-ID).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from digest import grouping
from digest.config import Config
from digest.errors import ConfigError
from digest.models import Delivery, IsoWeek
from digest.pipeline.batches import Planned, plan_batches
from digest.pipeline.lease import SendLease
from digest.store import DeliveryRow, Store
from digest.workers.queue import BatchJob, JobQueue


@dataclass(frozen=True, slots=True)
class IssueStatus:
    """One issue as the workers see it: ledger counts, its batches, and the rows in doubt."""

    issue_key: str
    counts: dict[Delivery, int]
    jobs: tuple[BatchJob, ...]
    in_doubt: tuple[DeliveryRow, ...]
    #: ``job id → (worker, since)`` of the batches a worker holds (or held when it died).
    holders: dict[int, tuple[str, dt.datetime]]

    @property
    def todo(self) -> int:
        return self.counts[Delivery.PENDING] + self.counts[Delivery.FAILED_TEMPORARY]

    @property
    def doing(self) -> int:
        return self.counts[Delivery.CLAIMED]

    def batches(self, status: str) -> list[BatchJob]:
        return [j for j in self.jobs if j.status == status]


def issue_status(store: Store, queue: JobQueue, issue_key: str) -> IssueStatus:
    jobs = tuple(queue.jobs(issue_key))
    return IssueStatus(
        issue_key,
        store.delivery_counts(issue_key),
        jobs,
        tuple(store.deliveries(issue_key, Delivery.UNKNOWN)),
        store.batch_holders(j.id for j in jobs if j.status == "doing"),
    )


def status_keys(config: Config, store: Store, queue: JobQueue, now: dt.datetime) -> list[str]:
    """The issues worth showing without ``--week``: unfinished ones, ones with batches, and the due one."""
    from digest.pipeline.issue import resolve_weeks

    keys = set(store.unfinished_issues(now)) | {j.issue_key for j in queue.jobs()}
    due = grouping.issue_key(resolve_weeks(config, now))
    if store.frozen_issue(due) is not None:
        keys.add(due)
    return sorted(keys)


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What ``reconcile`` did: claims found abandoned (now in doubt), and the plan that followed."""

    abandoned: tuple[str, ...]
    planned: Planned


def reconcile(
    config: Config,
    store: Store,
    queue: JobQueue,
    weeks: Sequence[IsoWeek],
    *,
    clock: Callable[[], dt.datetime],
    resend_in_doubt: bool = False,
) -> Reconciled:
    """Make the issue's ledger and queue agree; see the module docstring."""
    key = grouping.issue_key(weeks)
    if store.frozen_issue(key) is None:
        raise ConfigError(f"--week: issue {key} has not been sent (nothing to reconcile)")
    abandoned: tuple[str, ...] = ()
    if not any(j.status == "doing" for j in queue.jobs(key)):
        # No batch of the issue runs anywhere: a claim left is a dead worker's.
        with SendLease(store, clock):
            claimed = store.deliveries(key, Delivery.CLAIMED)
            store.release_claims_among(key, [r.email for r in claimed], clock())
            abandoned = tuple(r.email for r in claimed)
    planned = plan_batches(config, store, weeks, queue, clock=clock, resend_unknown=resend_in_doubt)
    return Reconciled(abandoned, planned)
