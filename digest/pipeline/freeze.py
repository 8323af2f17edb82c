"""Freeze an issue and plan it: the frozen issue and variants every send of it uses.

``prepare`` freezes (or reads back) the issue; ``plan`` says which ledger
rows a send of it adds now. An issue is planned against the list as it
was at its freeze: subscribers who join later are added only while it is
the *current* issue (its last week is the last complete week, or later),
so a resumed old issue never reaches people who joined weeks after it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from digest import grouping
from digest.codec import issue_from_json, issue_to_json
from digest.config import Config
from digest.errors import IssueHeld, ListShrunk
from digest.models import Delivery, IsoWeek, SubscriberStatus
from digest.pipeline.carry import plan_issue
from digest.pipeline.issue import (
    Audience,
    Built,
    audience,
    build,
    check_size,
    renderer_for,
    selection,
)
from digest.store import Store

#: Why a due row was skipped because its address is on no list any more (it may come back).
NO_LONGER_LISTED = "no longer on the list"
#: Ledger states whose rows a send would still try.
_OPEN = (Delivery.PENDING, Delivery.FAILED_TEMPORARY, Delivery.CLAIMED)


def prepare(config: Config, store: Store, weeks: Sequence[IsoWeek], now: dt.datetime) -> Built:
    """The issue to send for ``weeks``: the frozen one if it exists, else built and frozen now.

    Freezing stores the issue's entries and rendered variants before anything
    is sent, so a re-run after a crash sends the same issue, not a newer one.
    """
    key = grouping.issue_key(weeks)
    frozen = store.frozen_issue(key)
    aud: Audience | None = None
    noted: tuple[str, ...] = ()
    if frozen is None:
        # The issue takes earlier weeks' unsent entries; a thin week is held (see pipeline.carry).
        planned = plan_issue(config, store, weeks)
        issue = planned.issue
        try:
            check_size(config, issue)
        except IssueHeld:
            store.hold_issue(key, now, len(issue.entries))  # so later issues know the digest had started
            raise
        built = build(config, store, issue, now)
        # The entries it carried are recorded in the freeze's own transaction (store.freeze_issue).
        if store.freeze_issue(key, issue_to_json(issue), list(built.variants.values()), now, planned.records()):
            aud = built.audience  # the same lists, just read: no need to read and check them again
            noted = planned.warnings
        frozen = store.frozen_issue(key)
        assert frozen is not None
    issue = issue_from_json(frozen.payload)
    variants = {r.variant: r for r in frozen.variants}
    if aud is None:
        aud = audience(config, store, issue)
    missing: dict[str, frozenset[str] | None] = {}
    for s, v in aud.assignments:
        if v is not None and v not in variants and v not in missing:
            missing[v] = selection(s, issue)
    if missing:
        # A subscriber who joined after the freeze: render their variant from the frozen issue.
        extra = renderer_for(config).variants(issue, [sel or frozenset() for sel in missing.values()])
        # Stored like the first ones: re-runs send the same bytes and the web version exists.
        store.add_variants(issue.key, list(extra.values()))
        frozen = store.frozen_issue(issue.key)
        assert frozen is not None
        variants = {r.variant: r for r in frozen.variants}
    return Built(issue, variants, aud, frozen.frozen_at, aud.problems + noted)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a send of a frozen issue adds to the ledger now.

    ``new``: ``(email, variant)`` rows for people not in the ledger yet;
    ``back``: rows skipped as no longer listed whose address is listed again.
    """

    new: tuple[tuple[str, str], ...]
    back: tuple[str, ...]
    current: bool


def is_current(config: Config, weeks: Sequence[IsoWeek], now: dt.datetime) -> bool:
    """Whether the issue of ``weeks`` is the current one: its last week is the last complete week, or later."""
    return max(weeks) >= grouping.last_complete_week(now, config.digest.tz)


def plan(config: Config, store: Store, built: Built, now: dt.datetime, *, accept_list_change: bool = False) -> Plan:
    """The rows to add for ``built`` now (read only: the caller applies them).

    Raises ``ListShrunk`` when more than half of the issue's ledger rows
    are for addresses on no list any more (and some of them still to send),
    unless ``accept_list_change``.
    """
    key = built.issue.key
    assignments = built.audience.assignments
    rows = store.ledger_states(key)
    if not rows:
        # The first send of the issue: everyone with a variant, as listed.
        return Plan(tuple((s.email, v) for s, v in assignments if v), (), is_current(config, built.issue.weeks, now))
    listed = {s.email.lower() for s, _ in assignments}
    if not accept_list_change:
        left = {e for e, st in store.subscriber_status().items() if st is not SubscriberStatus.ACTIVE}
        gone = [r for r in rows if r.email not in listed and r.email not in left]
        if 2 * len(gone) > len(rows) and any(r.state in _OPEN for r in gone):
            raise ListShrunk(
                f"issue {key}: the subscriber lists lost {len(gone)} of its {len(rows)} recipients since it was"
                f" frozen (a list file cut short?); check {config.subscribers_dir}, or pass --accept-list-change"
                " to send to those still listed"
            )
    current = is_current(config, built.issue.weeks, now)
    if not current:
        return Plan((), (), False)  # planned at its freeze; later joiners wait for the next issue
    have = {r.email for r in rows}
    wanted = {s.email.lower() for s, v in assignments if v}
    new = tuple((s.email, v) for s, v in assignments if v and s.email.lower() not in have)
    back = tuple(
        r.email for r in rows if r.state is Delivery.SKIPPED and r.last_error == NO_LONGER_LISTED and r.email in wanted
    )
    return Plan(new, back, current)
