"""What a reported failure means for the subscriber, and when bounces add up to ``bounced``.

Pure rules, RFC 3463 by status code:

- hard: 5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10, 5.2.1 (the mailbox is gone) — weight 1;
- soft: 4.x.x, ``Action: delayed``, 5.2.2 (mailbox full) — weight 0.5;
- policy: 5.7.x (spam blocks, authentication) — reported, never scored;
- anything else permanent without a code that says so is soft, since only a
  clear "no such mailbox" may end a subscription.

Score: at most one event per address per day (the heaviest), summed since
the last quiet gap longer than ``stale_after``; at ``threshold`` the address
is ``bounced``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from digest.bounces.report import Failure

HARD_STATUSES = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"})
_NO_MAILBOX_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|mailbox (unavailable|not found)|"
    r"does not exist|recipient not found|recipientnotfound|invalid recipient",
    re.IGNORECASE,
)


class Verdict(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    POLICY = "policy"
    IGNORED = "ignored"


WEIGHTS = {Verdict.HARD: 1.0, Verdict.SOFT: 0.5}


@dataclass(frozen=True, slots=True)
class BounceSettings:
    """``[bounces]``: how bounces are scored (the mailbox settings live beside the scanner)."""

    threshold: float = 3.0
    stale_after: dt.timedelta = dt.timedelta(days=14)


def classify(failure: Failure) -> Verdict:
    """The verdict on one failure a report names."""
    status, action = failure.status, failure.action
    if action in ("delivered", "relayed", "expanded"):
        return Verdict.IGNORED
    if action == "delayed" or status.startswith("4.") or status == "5.2.2":
        return Verdict.SOFT
    if status in HARD_STATUSES:
        return Verdict.HARD
    if status.startswith("5.7."):
        return Verdict.POLICY
    if (not status or status == "5.0.0") and _NO_MAILBOX_WORDS.search(failure.diagnostic):
        return Verdict.HARD
    return Verdict.SOFT


def score(events: Iterable[tuple[dt.datetime, Verdict]], settings: BounceSettings) -> float:
    """The bounce score of one address from its events (any order)."""
    per_day: dict[dt.date, tuple[dt.datetime, float]] = {}
    for at, verdict in events:
        weight = WEIGHTS.get(verdict, 0.0)
        if not weight:
            continue
        day = at.astimezone(dt.UTC).date()
        seen = per_day.get(day)
        if seen is None or weight > seen[1]:
            per_day[day] = (min(at, seen[0]) if seen else at, weight)
    total = 0.0
    last: dt.datetime | None = None
    for at, weight in sorted(per_day.values()):
        if last is not None and at - last > settings.stale_after:
            total = 0.0  # a long quiet spell: the mailbox recovered
        total += weight
        last = at
    return total


def is_stale(last_event: dt.datetime | None, now: dt.datetime, settings: BounceSettings) -> bool:
    """True when the last event is older than ``stale_after``: the score has reset."""
    return last_event is not None and now - last_event > settings.stale_after
