"""The one orchestrator: fetch → store → group → render → compose → send.

Only this package (with ``cli`` and ``schedule``) sees the whole ``Config``;
each stage gets just what it needs. ``now`` always comes from the caller.

- ``gather``: fetch every source, record the results;
- ``issue``: weeks, themes and audience of an issue, its rendered variants, files;
- ``deliver``: freeze the issue, plan the ledger, send exactly once, the cron run.
"""

from __future__ import annotations

from digest.pipeline.deliver import (
    LOCK_TTL,
    SEND_LOCK,
    RunReport,
    SendSummary,
    prepare,
    run,
    send_issue,
)
from digest.pipeline.gather import FetchLine, fetch_all, open_store
from digest.pipeline.issue import (
    Audience,
    Built,
    TooFewEntries,
    audience,
    build,
    check_size,
    compose_settings,
    credits,
    default_list_id,
    describe,
    make_issue,
    recipient,
    recipients,
    renderer_for,
    resolve_weeks,
    secret,
    selection,
    source_themes,
    write_build,
)

__all__ = [
    "LOCK_TTL",
    "SEND_LOCK",
    "Audience",
    "Built",
    "FetchLine",
    "RunReport",
    "SendSummary",
    "TooFewEntries",
    "audience",
    "build",
    "check_size",
    "compose_settings",
    "credits",
    "default_list_id",
    "describe",
    "fetch_all",
    "make_issue",
    "open_store",
    "prepare",
    "recipient",
    "recipients",
    "renderer_for",
    "resolve_weeks",
    "run",
    "secret",
    "selection",
    "send_issue",
    "source_themes",
    "write_build",
]
