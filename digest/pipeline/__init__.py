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

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# Light, and ``prune`` the function must win over ``prune`` the submodule: imported eagerly.
from digest.pipeline.prune import prune, prune_if_due

if TYPE_CHECKING:
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

#: Where each name lives. A name's module is imported on first use, so that ``digest fetch``
#: (which needs ``gather``) does not load the renderer, premailer, the composer and the sender.
_HOMES = {
    "IssueHeld": "digest.errors",
    "TooFewEntries": "digest.errors",
    "Planned": "digest.pipeline.carry",
    "plan_issue": "digest.pipeline.carry",
    "send_issue": "digest.pipeline.deliver",
    "prepare": "digest.pipeline.freeze",
    "FetchLine": "digest.pipeline.gather",
    "fetch_all": "digest.pipeline.gather",
    "open_store": "digest.pipeline.gather",
    "LOCK_TTL": "digest.pipeline.lease",
    "SEND_LOCK": "digest.pipeline.lease",
    "RunReport": "digest.pipeline.run",
    "run": "digest.pipeline.run",
    "SendSummary": "digest.pipeline.summary",
}


class _Package(types.ModuleType):
    """This package's module type: ``run`` stays the function when ``digest.pipeline.run`` is imported.

    The import system binds every submodule on its package as it loads it,
    which would make ``pipeline.run`` the module ``digest.pipeline.run``
    (the eager ``from digest.pipeline.run import run`` used to bind the
    function back over it).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "run" and isinstance(value, types.ModuleType):
            value = value.run
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name, "digest.pipeline.issue" if name in __all__ else None)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once
    return value
