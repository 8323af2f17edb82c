"""Read-only summaries of issues for operators: ``digest issues`` and ``digest report``.

Everything here is derived from the frozen issues, the ledger and the
subscribers' status; nothing is stored twice. An issue whose ledger
``digest prune`` compacted is reported from its counts (``delivery_counts``):
its per-state and per-variant counts and first and last sent stay, the
per-address detail (codes, domains, failures, unsubscribes) is gone.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select

from digest.models import Delivery
from digest.store.approvals import awaiting
from digest.store.base import StoreBase
from digest.store.schema import deliveries as t_deliveries
from digest.store.schema import delivery_counts as t_counts
from digest.store.schema import issues as t_issues
from digest.store.schema import subscriber_status as t_status

_OPEN = (Delivery.PENDING, Delivery.CLAIMED, Delivery.FAILED_TEMPORARY)
_BAD = (Delivery.FAILED_PERMANENT, Delivery.UNKNOWN)


@dataclass(frozen=True, slots=True)
class IssueSummary:
    """One issue as ``digest issues`` lists it."""

    key: str
    frozen_at: dt.datetime
    counts: dict[str, int]
    first_sent: dt.datetime | None
    last_sent: dt.datetime | None
    #: Since when the issue waits for an editor's ``digest approve`` (None: it does not).
    waiting_since: dt.datetime | None = None
    #: ``digest prune`` turned its ledger rows into counts (the counts above are those).
    compacted: bool = False

    @property
    def state(self) -> str:
        """``sending`` while rows are open, ``partly failed`` if any failed or are in doubt, else ``sent``.

        An issue frozen with nobody planned yet is ``frozen``; one frozen for an
        editor's approval (or whose bytes changed since) is ``waiting for approval``.
        """
        if self.waiting_since is not None:
            return "waiting for approval"
        if not self.counts:
            return "frozen"
        if any(self.counts.get(str(s), 0) for s in _OPEN):
            return "sending"
        if any(self.counts.get(str(s), 0) for s in _BAD):
            return "partly failed"
        return "sent"


@dataclass(frozen=True, slots=True)
class IssueReport:
    """One issue in depth, for ``digest report``."""

    summary: IssueSummary
    by_variant: dict[str, dict[str, int]]
    codes: dict[str, int]
    unknown: tuple[str, ...]
    failed: tuple[tuple[str, int | None, str], ...]
    domains: dict[str, int]
    unsubscribes: dict[str, int] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        s = self.summary
        if s.first_sent is None or s.last_sent is None:
            return None
        return (s.last_sent - s.first_sent).total_seconds()

    @property
    def rate(self) -> float | None:
        """Messages per second from the first to the last sent one."""
        sent = self.summary.counts.get(str(Delivery.SENT), 0)
        if not self.duration or sent < 2:
            return None
        return (sent - 1) / self.duration


class ReportsMixin(StoreBase):
    """Issue summaries and reports."""

    def issue_summaries(self) -> list[IssueSummary]:
        """Every frozen issue, newest first."""
        with self._read() as conn:
            issues = conn.execute(select(t_issues.c.key, t_issues.c.frozen_at)).all()
            counts: dict[str, dict[str, int]] = {}
            q = select(t_deliveries.c.issue_key, t_deliveries.c.state, func.count()).group_by(
                t_deliveries.c.issue_key, t_deliveries.c.state
            )
            for key, state, n in conn.execute(q):
                counts.setdefault(key, {})[state] = int(n)
            sent_q = (
                select(
                    t_deliveries.c.issue_key,
                    func.min(t_deliveries.c.updated_at),
                    func.max(t_deliveries.c.updated_at),
                )
                .where(t_deliveries.c.state == str(Delivery.SENT))
                .group_by(t_deliveries.c.issue_key)
            )
            sent = {key: (first, last) for key, first, last in conn.execute(sent_q)}
            waiting = awaiting(conn)
            # Issues compacted by `digest prune`: their counts stand in for their rows.
            compacted: set[str] = set()
            for key, state, n, first, last in conn.execute(
                select(
                    t_counts.c.issue_key, t_counts.c.state, t_counts.c.count, t_counts.c.first_at, t_counts.c.last_at
                )
            ):
                compacted.add(key)
                per = counts.setdefault(key, {})
                per[state] = per.get(state, 0) + int(n)
                if state == str(Delivery.SENT):
                    lo, hi = sent.get(key, (first, last))
                    sent[key] = (min(lo, first), max(hi, last))
        out = [
            IssueSummary(
                key, frozen_at, counts.get(key, {}), *sent.get(key, (None, None)), waiting.get(key), key in compacted
            )
            for key, frozen_at in issues
        ]
        # Newest first: by the issue's (first) week, which sorts as text ("2018-W02" < "2018-W10").
        return sorted(out, key=lambda s: (s.key, s.frozen_at), reverse=True)

    def sent_per_minute(self, key: str) -> list[tuple[dt.datetime, int]]:
        """Messages of issue ``key`` sent in each minute (UTC), from its first sent minute to its last.

        Minutes without a send inside that span count 0; an issue nothing was sent of gives ``[]``.
        Derived from the ``updated_at`` of its ``sent`` rows (a sent row is never updated again).
        """
        with self._read() as conn:
            rows = conn.execute(
                select(t_deliveries.c.updated_at).where(
                    t_deliveries.c.issue_key == key, t_deliveries.c.state == str(Delivery.SENT)
                )
            ).scalars()
            minutes = Counter(when.astimezone(dt.UTC).replace(second=0, microsecond=0) for when in rows)
        if not minutes:
            return []
        first, last = min(minutes), max(minutes)
        span = int((last - first).total_seconds() // 60)
        return [
            (first + dt.timedelta(minutes=i), minutes.get(first + dt.timedelta(minutes=i), 0)) for i in range(span + 1)
        ]

    def issue_report(self, key: str) -> IssueReport | None:
        """The report of issue ``key``, or None if it was never frozen."""
        summaries = self.issue_summaries()
        summary = next((s for s in summaries if s.key == key), None)
        if summary is None:
            return None
        by_variant: dict[str, dict[str, int]] = {}
        codes: Counter[str] = Counter()
        domains: Counter[str] = Counter()
        unknown: list[str] = []
        failed: list[tuple[str, int | None, str]] = []
        with self._read() as conn:
            rows = conn.execute(
                select(
                    t_deliveries.c.email,
                    t_deliveries.c.variant,
                    t_deliveries.c.state,
                    t_deliveries.c.last_code,
                    t_deliveries.c.last_error,
                ).where(t_deliveries.c.issue_key == key)
            ).all()
            compacted = select(t_counts.c.variant, t_counts.c.state, t_counts.c.count).where(
                t_counts.c.issue_key == key
            )
            for variant, state, n in conn.execute(compacted):
                per = by_variant.setdefault(variant, {})
                per[state] = per.get(state, 0) + int(n)
            for email, variant, state, code, error in rows:
                per = by_variant.setdefault(variant, {})
                per[state] = per.get(state, 0) + 1
                if code is not None:
                    codes[str(code)] += 1
                domains[email.rpartition("@")[2]] += 1
                if state == Delivery.UNKNOWN:
                    unknown.append(email)
                elif state in (Delivery.FAILED_PERMANENT, Delivery.FAILED_TEMPORARY):
                    failed.append((email, code, error or ""))
            unsubscribes: Counter[str] = Counter()
            if summary.first_sent is not None:
                following = [s.first_sent for s in summaries if s.first_sent and s.first_sent > summary.first_sent]
                until = min(following) if following else None
                recipients = {r[0] for r in rows if r[2] == Delivery.SENT}
                q = select(t_status.c.email, t_status.c.how).where(
                    t_status.c.status == "unsubscribed", t_status.c.changed_at >= summary.first_sent
                )
                if until is not None:
                    q = q.where(t_status.c.changed_at < until)
                for email, how in conn.execute(q):
                    if email in recipients:
                        unsubscribes[how if how in ("one-click", "form") else "other"] += 1
        return IssueReport(
            summary=summary,
            by_variant=by_variant,
            codes=dict(codes.most_common()),
            unknown=tuple(sorted(unknown)),
            failed=tuple(sorted(failed)),
            domains=dict(domains.most_common()),
            unsubscribes=dict(unsubscribes),
        )
