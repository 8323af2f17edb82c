"""The dry run: compose what a send would send now into a Maildir beside the outbox, change nothing.

An issue not frozen yet is built as a send would freeze it (current
templates, current lists). A frozen issue is read as a send reads it: its
frozen variants (never re-rendered with today's templates) and its
ledger, so only the rows a real send would send now are composed: the
due ones, plus those ``freeze.plan`` would add.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from digest import grouping
from digest.codec import issue_from_json
from digest.compose import MessageTemplate
from digest.config import Config
from digest.models import IsoWeek, Outgoing
from digest.pipeline.freeze import plan
from digest.pipeline.issue import (
    Built,
    audience,
    build,
    check_size,
    compose_settings,
    make_issue,
    recipients,
    renderer_for,
    selection,
)
from digest.pipeline.summary import SendSummary
from digest.send import MaildirSender, MemoryLedger, SendEvent
from digest.store import Store


def dry_run(
    config: Config,
    store: Store,
    weeks: Sequence[IsoWeek],
    now: dt.datetime,
    clock: Callable[[], dt.datetime],
    progress: Callable[[SendEvent, int], None] | None,
) -> SendSummary:
    """Compose what a send would send now into a Maildir beside the outbox; no state changes."""
    built, frozen = as_it_would_go(config, store, weeks, now)
    key = built.issue.key
    if not frozen:
        rows = [(s.email, v) for s, v in built.audience.assignments if v is not None]
    else:
        rows = _would_send(config, store, built, now)
    settings = compose_settings(config, built.date)
    templates = {k: MessageTemplate.build(r, settings) for k, r in built.variants.items()}
    outbox = config.sender.maildir.with_name(config.sender.maildir.name + "-dry-run")
    make_recipient = recipients(config)
    people = {s.email.lower(): s for s, _ in built.audience.assignments}
    msgs: list[Outgoing] = [
        templates[v].personalise(make_recipient(people[e.lower()]))
        for e, v in rows
        if e.lower() in people and v in templates  # a real send skips the rest
    ]
    total = len(msgs)

    def on_event(event: SendEvent) -> None:
        if progress is not None:
            progress(event, total)

    report = MaildirSender(outbox).send(msgs, MemoryLedger(), clock=clock, progress=on_event)
    return SendSummary(key, len(msgs), len(msgs), built.audience.no_match, report, built.warnings, (), outbox)


def as_it_would_go(config: Config, store: Store, weeks: Sequence[IsoWeek], now: dt.datetime) -> tuple[Built, bool]:
    """The issue of ``weeks`` as a send would send it, and whether it is frozen; read only (never freezes).

    A frozen issue is read back (see ``_frozen``); another is built now as a
    send would freeze it (``TooFewEntries`` when it would not go out).
    """
    built = _frozen(config, store, grouping.issue_key(weeks))
    if built is not None:
        return built, True
    issue = make_issue(config, store, weeks)
    check_size(config, issue)
    return build(config, store, issue, now), False


def _frozen(config: Config, store: Store, key: str) -> Built | None:
    """The frozen issue as a send would use it, read only: variants a joiner needs are rendered in memory."""
    frozen = store.frozen_issue(key)
    if frozen is None:
        return None
    issue = issue_from_json(frozen.payload)
    variants = {r.variant: r for r in frozen.variants}
    aud = audience(config, store, issue)
    missing = {v: selection(s, issue) for s, v in aud.assignments if v is not None and v not in variants}
    if missing:
        variants.update(renderer_for(config).variants(issue, [sel or frozenset() for sel in missing.values()]))
    return Built(issue, variants, aud, frozen.frozen_at, aud.problems)


def _would_send(config: Config, store: Store, built: Built, now: dt.datetime) -> list[tuple[str, str]]:
    """``(email, variant)`` of every message a send of the frozen issue would send now."""
    key = built.issue.key
    todo = plan(config, store, built, now)
    due = store.due_deliveries(key, now, include_unknown=config.sender.resend_unknown)
    back = set(todo.back)
    again = [(r.email, r.variant) for r in store.deliveries(key) if r.email in back]
    return sorted([*((r.email, r.variant) for r in due), *again, *todo.new])
