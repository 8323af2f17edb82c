"""Sources that keep failing: the ones ``[fetch] alert_after`` says a run's report calls out.

Read from the store's per-source failure count (reset by a success), so a
source is called out from its ``alert_after``-th failure in a row until it
fetches again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from digest.config import Config
from digest.errors import ConfigError, SendError
from digest.send import make_sender
from digest.signup.mail import deliver, notice
from digest.store import Store


@dataclass(frozen=True, slots=True)
class SourceAlert:
    """A source that has failed ``failures`` runs in a row, and why it failed last."""

    source: str
    failures: int
    last_error: str

    def line(self) -> str:
        """One line for the report: ``NAME: failed 3 runs in a row (HTTP 503)``."""
        why = f" ({self.last_error})" if self.last_error else ""
        return f"{self.source}: failed {self.failures} runs in a row{why}"

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "consecutive_failures": self.failures, "last_error": self.last_error or None}


def source_alerts(config: Config, store: Store) -> list[SourceAlert]:
    """The configured sources that have failed ``config.fetch.alert_after`` runs in a row or more, in config order."""
    reports = store.source_reports([s.name for s in config.sources], history=0)
    return [SourceAlert(r.name, r.failures, r.last_error) for r in reports if r.alert(config.fetch.alert_after)]


def mail_alerts(config: Config, alerts: list[SourceAlert], clock: Callable[[], dt.datetime]) -> list[str]:
    """Mail ``[editorial] editors`` about the sources that reached ``alert_after`` in this run; problems.

    Only at the run where the count reaches ``alert_after`` exactly (a success resets it), so each
    failing streak is mailed once, not at every run.
    """
    due = [a for a in alerts if a.failures == config.fetch.alert_after]
    if not due or not config.editorial.editors:
        return []
    lines = "\n".join(f"- {a.line()}" for a in due)
    text = (
        f"These sources of {config.digest.title} have failed {config.fetch.alert_after} runs in a row:\n\n"
        f"{lines}\n\n`digest sources` shows their last fetches. This mail is sent once per failing streak.\n"
    )
    subject = f"{config.digest.title}: {len(due)} source(s) keep failing"
    problems = []
    try:
        sender = make_sender(config.sender)
    except ConfigError as exc:
        return [f"source alert mail: {exc}"]
    for editor in config.editorial.editors:
        try:
            deliver(sender, notice(config.sender.from_, editor, subject, text, clock(), "alert"), clock)
        except SendError as exc:
            problems.append(f"source alert mail to {editor}: {exc}")
    return problems
