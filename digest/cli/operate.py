"""``digest issues`` and ``digest report``: what went out, for the operator."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from digest.cli.base import Context, cli, console, handle_errors, parse_week, pass_ctx, pipeline
from digest.errors import ConfigError
from digest.models import Delivery

_STATES = [str(s) for s in Delivery]


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


@cli.command(name="issues")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one issue per line.")
@pass_ctx
@handle_errors
def issues_cmd(ctx: Context, as_json: bool) -> None:
    """Every issue, newest first: state, when it was frozen and sent, ledger counts."""
    config = ctx.config
    with pipeline.open_store(config) as store:
        summaries = store.issue_summaries()
        frozen = {s.key for s in summaries}
        # A held week (too few entries; they roll into a later issue) was never frozen: listed as "held".
        held = [(key, at, n) for key, at, n in store.held_issues() if key not in frozen]
    if as_json:
        for key, at, n in held:
            sys.stdout.write(json.dumps({"key": key, "state": "held", "held_at": _iso(at), "entries": n}) + "\n")
        for s in summaries:
            row = {
                "key": s.key,
                "state": s.state,
                "frozen_at": _iso(s.frozen_at),
                "first_send": _iso(s.first_sent),
                "last_send": _iso(s.last_sent),
                "counts": {state: s.counts.get(state, 0) for state in _STATES},
                "compacted": s.compacted,
            }
            sys.stdout.write(json.dumps(row) + "\n")
        return
    for key, at, n in held:
        console.print(f"{key}: held at {at.astimezone(config.digest.tz):%Y-%m-%d %H:%M} with {n} entries", markup=False)
    if not summaries:
        console.print("no issue has been frozen yet (`digest send` or `digest run` freezes one)")
        return
    table = Table(title="issues", title_justify="left")
    for col in ("issue", "state", "frozen", "sent", "failed", "unknown", "open", "skipped"):
        table.add_column(col, justify="left" if col in ("issue", "state", "frozen") else "right")
    tz = config.digest.tz
    for s in summaries:
        c = s.counts
        open_ = sum(c.get(str(x), 0) for x in (Delivery.PENDING, Delivery.CLAIMED, Delivery.FAILED_TEMPORARY))
        table.add_row(
            s.key,
            s.state,
            s.frozen_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            str(c.get(str(Delivery.SENT), 0)),
            str(c.get(str(Delivery.FAILED_PERMANENT), 0)),
            str(c.get(str(Delivery.UNKNOWN), 0)),
            str(open_),
            str(c.get(str(Delivery.SKIPPED), 0)),
        )
    console.print(table)


@cli.command(name="report")
@click.option("--week", help="The issue's ISO week, like 2018-W02 (default: the newest issue).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_ctx
@handle_errors
def report_cmd(ctx: Context, week: str | None, as_json: bool) -> None:
    """One issue in depth: states by variant, rate, SMTP codes, failed and in-doubt addresses, domains."""
    config = ctx.config
    with pipeline.open_store(config) as store:
        if week is None:
            newest = store.issue_summaries()
            if not newest:
                raise ConfigError("no issue has been frozen yet; nothing to report")
            key = newest[0].key
        else:
            key = str(parse_week(week))
            key = next((s.key for s in store.issue_summaries() if s.key.startswith(key)), key)
        rep = store.issue_report(key)
    if rep is None:
        raise ConfigError(f"--week: no issue {key} was frozen")
    s = rep.summary
    data: dict[str, Any] = {
        "key": s.key,
        "state": s.state,
        "frozen_at": _iso(s.frozen_at),
        "first_send": _iso(s.first_sent),
        "last_send": _iso(s.last_sent),
        "counts": {state: s.counts.get(state, 0) for state in _STATES},
        "variants": rep.by_variant,
        "duration_seconds": rep.duration,
        "rate_per_second": rep.rate,
        "smtp_codes": rep.codes,
        "unknown": list(rep.unknown),
        "failed": [{"email": e, "code": c, "error": err} for e, c, err in rep.failed],
        "domains": rep.domains,
        "unsubscribes": rep.unsubscribes,
    }
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
        return
    console.print(f"issue {s.key}: {s.state}", markup=False)
    console.print("  " + ", ".join(f"{k} {v}" for k, v in data["counts"].items() if v), markup=False)
    if rep.duration is not None:
        rate = f", {rep.rate:.1f} msg/s" if rep.rate else ""
        console.print(f"  sent from {s.first_sent} to {s.last_sent} ({rep.duration:.1f} s{rate})", markup=False)
    for variant, counts in sorted(rep.by_variant.items()):
        console.print(Text.assemble("  variant ", variant, ": ", ", ".join(f"{k} {v}" for k, v in counts.items())))
    if rep.codes:
        console.print("  SMTP codes: " + ", ".join(f"{k} ×{v}" for k, v in rep.codes.items()), markup=False)
    top = list(rep.domains.items())[:10]
    console.print("  domains: " + ", ".join(f"{d} {n}" for d, n in top), markup=False)
    for email in rep.unknown:
        console.print(Text.assemble("  in doubt: ", email))
    for email, code, error in rep.failed:
        console.print(Text.assemble("  failed: ", email, f" ({code}) " if code else " ", error))
    if rep.unsubscribes:
        console.print(
            "  unsubscribes since: " + ", ".join(f"{k} {v}" for k, v in sorted(rep.unsubscribes.items())), markup=False
        )


@cli.command(name="prune")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_ctx
@handle_errors
def prune_cmd(ctx: Context, as_json: bool) -> None:
    """Compact the ledger of issues finished long ago and delete entries no source lists ([store] keep_*)."""
    from digest.cli.base import utcnow
    from digest.cli.reports import prune_report

    config = ctx.config
    with pipeline.open_store(config) as store:
        counts = pipeline.prune(config, store, utcnow())
    if as_json:
        sys.stdout.write(json.dumps({"command": "prune", **prune_report(counts)}) + "\n")
        return
    console.print(
        f"pruned: {counts.deliveries} ledger row(s) of {counts.issues} issue(s) compacted to counts,"
        f" {counts.entries} entr{'y' if counts.entries == 1 else 'ies'} deleted (their ids kept)",
        markup=False,
    )
