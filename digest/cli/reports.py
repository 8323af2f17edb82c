"""The ``--json`` reports of ``fetch``, ``send`` and ``run``: one JSON document each, for monitoring.

Each document has ``command``, ``exit_code`` (the exit status the command
ends with), the counts, and ``problems`` (one line each). The shapes:

- fetch: ``{"command": "fetch", "exit_code", "sources": [{"source", "status",
  "error", "elapsed", "new", "updated", "unchanged", ...}], "totals": {"sources",
  "new", "updated", "unchanged", "failed"}, "problems": [...]}``
- send: ``{"command": "send", "exit_code", "issue", "dry_run", "outbox", "planned",
  "due", "sent", "failed_permanent", "failed_temporary", "unknown", "skipped",
  "no_match", "states": {state: n}, "unknown_addresses": [...], "failures":
  [{"email", "code", "error"}], "problems": [...]}``
- run: ``{"command": "run", "exit_code", "fetch": <fetch without command>,
  "resumed": [<send>...], "sent": <send> | null, "skipped": str, "problems": [...]}``
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from digest.cli.base import pipeline
from digest.models import FetchStatus
from digest.store import PruneCounts

FAILED = (FetchStatus.FAILED, FetchStatus.BROKEN)
P = ParamSpec("P")
R = TypeVar("R")


def fetch_report(lines: list[pipeline.FetchLine]) -> dict[str, Any]:
    from digest.cli.gather import fetch_line_to_dict

    sources = [fetch_line_to_dict(line) for line in lines]
    failed = [line.result for line in lines if line.result.status in FAILED]
    totals = {
        "sources": len(lines),
        "new": sum(line.counts.new for line in lines),
        "updated": sum(line.counts.updated for line in lines),
        "unchanged": sum(line.counts.unchanged for line in lines),
        "failed": len(failed),
    }
    problems = [f"{r.source}: {r.status.value}: {r.error}" for r in failed]
    return {
        "command": "fetch",
        "exit_code": 1 if failed else 0,
        "sources": sources,
        "totals": totals,
        "problems": problems,
    }


def send_report(summary: pipeline.SendSummary, *, dry_run: bool = False, outbox: Path | None = None) -> dict[str, Any]:
    r = summary.report
    where = summary.outbox or outbox
    return {
        "command": "send",
        "exit_code": 1 if summary.failed else 0,
        "issue": summary.issue_key,
        "dry_run": dry_run,
        "outbox": str(where) if where else None,
        "planned": summary.planned,
        "due": summary.due,
        "sent": r.sent,
        "failed_permanent": r.failed_permanent,
        "failed_temporary": r.failed_temporary,
        "unknown": r.unknown,
        "skipped": r.skipped,
        "no_match": summary.no_match,
        "states": {str(state.value): n for state, n in summary.counts.items()},
        "unknown_addresses": list(summary.unknown),
        "failures": [{"email": email, "code": code, "error": error} for email, code, error in r.problems],
        "problems": list(summary.problems),
    }


def run_report(report: pipeline.RunReport, *, outbox: Path | None = None) -> dict[str, Any]:
    fetched = fetch_report(report.fetched)
    del fetched["command"], fetched["exit_code"]
    return {
        "command": "run",
        "exit_code": report.exit_code,
        "fetch": fetched,
        "resumed": [send_report(s, outbox=outbox) for s in report.resumed],
        "sent": send_report(report.sent, outbox=outbox) if report.sent is not None else None,
        "skipped": report.skipped or None,
        "waiting": list(report.waiting),
        "problems": list(report.problems),
        "pruned": prune_report(report.pruned) if report.pruned is not None else None,
    }


def prune_report(counts: PruneCounts) -> dict[str, Any]:
    """What a prune did, as ``digest prune --json`` and ``digest run --json`` show it."""
    return {"issues": counts.issues, "deliveries": counts.deliveries, "entries": counts.entries}


def json_option(fn: Callable[P, R]) -> Callable[P, R]:
    """``--json``: the report as one JSON document on stdout instead of the table."""
    return click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")(fn)


def emit(document: dict[str, Any]) -> None:
    """Write ``document`` to stdout as one line of JSON (``-q`` does not silence it)."""
    click.echo(json.dumps(document, ensure_ascii=False, default=str))
