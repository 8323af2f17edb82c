"""What a send did, as the CLI, ``run`` and the scheduler report it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from digest.models import Delivery
from digest.send import SendReport


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
