"""Freeze an issue and plan it: the frozen issue and variants every send of it uses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from digest import grouping
from digest.codec import issue_from_json, issue_to_json
from digest.config import Config
from digest.models import IsoWeek
from digest.pipeline.issue import (
    Audience,
    Built,
    audience,
    build,
    check_size,
    make_issue,
    renderer_for,
    selection,
)
from digest.store import Store


def prepare(config: Config, store: Store, weeks: Sequence[IsoWeek], now: dt.datetime) -> Built:
    """The issue to send for ``weeks``: the frozen one if it exists, else built and frozen now.

    Freezing stores the issue's entries and rendered variants before anything
    is sent, so a re-run after a crash sends the same issue, not a newer one.
    """
    key = grouping.issue_key(weeks)
    frozen = store.frozen_issue(key)
    aud: Audience | None = None
    if frozen is None:
        issue = make_issue(config, store, weeks)
        check_size(config, issue)
        built = build(config, store, issue, now)
        if store.freeze_issue(key, issue_to_json(issue), list(built.variants.values()), now):
            aud = built.audience  # the same lists, just read: no need to read and check them again
        frozen = store.frozen_issue(key)
        assert frozen is not None
    issue = issue_from_json(frozen.payload)
    variants = {r.variant: r for r in frozen.variants}
    if aud is None:
        aud = audience(config, store, issue)
    missing = {v: selection(s, issue) for s, v in aud.assignments if v is not None and v not in variants}
    if missing:
        # A subscriber who joined after the freeze: render their variant from the frozen issue.
        extra = renderer_for(config).variants(issue, [sel or frozenset() for sel in missing.values()])
        # Stored like the first ones: re-runs send the same bytes and the web version exists.
        store.add_variants(issue.key, list(extra.values()))
        frozen = store.frozen_issue(issue.key)
        assert frozen is not None
        variants = {r.variant: r for r in frozen.variants}
    return Built(issue, variants, aud, frozen.frozen_at, aud.problems)
