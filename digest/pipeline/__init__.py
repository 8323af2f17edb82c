"""The one orchestrator: fetch → store → group → render → compose → send.

Only this package (with ``cli`` and ``schedule``) sees the whole ``Config``;
each stage gets just what it needs. ``now`` always comes from the caller.

- ``gather``: fetch every source, record the results;
- ``issue``: weeks, themes and audience of an issue, its rendered variants, files;
- ``carry``: what an issue carries (earlier weeks' unsent entries, updates), what expired;
- ``freeze``: freeze the issue (entries and rendered variants) before its first message;
- ``lease``: the ``send`` lock that lets one run at a time send;
- ``deliver``: plan the ledger and send one issue exactly once (``summary``: what it did);
- ``dryrun``: compose what a send would send, into a Maildir, changing nothing;
- ``approval``: with ``[editorial] approval = "required"``, hold a frozen issue until ``digest approve``;
- ``testsend``: ``send --test``, the message a subscriber would get, to test addresses, outside the ledger;
- ``run``: the cron one-shot.
"""

from __future__ import annotations

from digest.errors import IssueHeld, TooFewEntries
from digest.pipeline.carry import Planned, plan_issue
from digest.pipeline.deliver import send_issue
from digest.pipeline.freeze import prepare
from digest.pipeline.gather import FetchLine, fetch_all, open_store
from digest.pipeline.issue import (
    Audience,
    Built,
    audience,
    build,
    check_size,
    compose_settings,
    credits,
    default_list_id,
    describe,
    editions_dir,
    make_issue,
    no_entries,
    personal_copy,
    recipient,
    recipients,
    renderer_for,
    resolve_weeks,
    secret,
    selection,
    source_themes,
    web_copy,
    write_build,
)
from digest.pipeline.lease import LOCK_TTL, SEND_LOCK
from digest.pipeline.prune import prune, prune_if_due
from digest.pipeline.run import RunReport, run
from digest.pipeline.summary import SendSummary

__all__ = [
    "LOCK_TTL",
    "SEND_LOCK",
    "Audience",
    "Built",
    "FetchLine",
    "IssueHeld",
    "Planned",
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
    "editions_dir",
    "fetch_all",
    "make_issue",
    "no_entries",
    "open_store",
    "personal_copy",
    "plan_issue",
    "prepare",
    "prune",
    "prune_if_due",
    "recipient",
    "recipients",
    "renderer_for",
    "resolve_weeks",
    "run",
    "secret",
    "selection",
    "send_issue",
    "source_themes",
    "web_copy",
    "write_build",
]
