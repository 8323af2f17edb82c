"""What a send did, as the CLI, ``run`` and the scheduler report it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from digest.models import Delivery
from digest.send import SendReport


@dataclass(frozen=True, slots=True)
class SendSummary:
    """What a send did: the sender's report plus what never reached it.

    ``unknown`` lists every row of the issue in state ``unknown``, and
    ``in_doubt`` says why each is; a run that left any of them so failed.
    """

    issue_key: str
    planned: int
    due: int
    no_match: int
    report: SendReport
    problems: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    outbox: Path | None = None
    counts: Mapping[Delivery, int] = field(default_factory=dict)
    #: Every ``unknown`` row as ``(email, why)``: lost after the data, or a killed run's claim.
    in_doubt: tuple[tuple[str, str], ...] = ()
    #: How many of them this run left so (found from a killed run, or lost in this one).
    new_doubts: int = 0
    #: The send stopped early on a signal (SIGTERM, Ctrl-C); what was left is due for the next run.
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        r = self.report
        return bool(r.failed_permanent or r.failed_temporary or r.unknown or self.new_doubts)
