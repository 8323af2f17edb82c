"""The dry run: compose every message into a Maildir beside the outbox, change nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from digest import grouping
from digest.codec import issue_from_json
from digest.compose import MessageTemplate
from digest.config import Config
from digest.models import IsoWeek
from digest.pipeline.issue import build, check_size, compose_settings, make_issue, recipients
from digest.pipeline.summary import SendSummary
from digest.send import MaildirSender, SendEvent
from digest.store import Store


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


def dry_run(
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
