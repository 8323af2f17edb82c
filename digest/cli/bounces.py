"""``digest bounces scan|list|reset``: the bounce mailbox, and what it said about whom."""

from __future__ import annotations

import json
import sys

import click
from rich.text import Text

from digest.cli.base import Context, cli, console, handle_errors, pass_ctx, pipeline, utcnow
from digest.errors import ConfigError


@cli.group(name="bounces")
def bounces_group() -> None:
    """Bounces, complaints and mailto unsubscribes read from the bounce mailbox."""


@bounces_group.command(name="scan")
@click.option("--dry-run", is_flag=True, help="Read and report; record nothing and move no mail.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with the counts and lines.")
@pass_ctx
@handle_errors
def bounces_scan(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Read new mail of [bounces] maildir or imap_host; record bounces, act on scores and complaints."""
    from digest.pipeline.bounces import scan_bounces

    config = ctx.config
    with pipeline.open_store(config) as store:
        result = scan_bounces(config, store, utcnow(), dry_run=dry_run)
    if result is None:
        raise ConfigError(f"{config.path}: bounces: no mailbox configured (set bounces.maildir or bounces.imap_host)")
    if as_json:
        data = {
            "read": result.read,
            "counts": dict(result.counts),
            "bounced": result.bounced,
            "complained": result.complained,
            "unsubscribed": result.unsubscribed,
            "lines": result.lines,
            "dry_run": dry_run,
        }
        sys.stdout.write(json.dumps(data) + "\n")
        return
    for line in result.lines:
        console.print(Text(line))
    what = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())) or "nothing"
    prefix = "dry run: " if dry_run else ""
    console.print(Text(f"{prefix}{result.read} messages read: {what}"))
    for label, emails in (("bounced", result.bounced), ("complained", result.complained)):
        if emails:
            console.print(Text(f"now {label}: {', '.join(emails)}"))


@bounces_group.command(name="list")
@click.argument("email", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one event per line.")
@pass_ctx
@handle_errors
def bounces_list(ctx: Context, email: str | None, as_json: bool) -> None:
    """Recorded bounce events (of one address, or all), oldest first."""
    config = ctx.config
    with pipeline.open_store(config) as store:
        events = store.bounce_events(email)
    for e in events:
        if as_json:
            row = {
                "email": e.email,
                "issue": e.issue_key,
                "verdict": e.verdict,
                "status": e.status,
                "at": e.at.isoformat(),
            }
            sys.stdout.write(json.dumps(row) + "\n")
        else:
            console.print(
                Text(f"{e.at:%Y-%m-%d %H:%M} {e.email} {e.verdict} {e.status} issue {e.issue_key} {e.detail}")
            )
    if not as_json:
        console.print(f"{len(events)} events")


@bounces_group.command(name="reset")
@click.argument("email")
@pass_ctx
@handle_errors
def bounces_reset(ctx: Context, email: str) -> None:
    """Forget an address's bounce events (its score starts again from 0)."""
    with pipeline.open_store(ctx.config) as store:
        removed = store.reset_bounces(email)
    console.print(Text(f"removed {removed} bounce events of {email}"))
