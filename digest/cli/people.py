"""``digest subscribers add|remove|list|import``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from digest import pipeline
from digest.cli.base import (
    Context,
    cli,
    console,
    err_console,
    handle_errors,
    pass_ctx,
)
from digest.errors import ConfigError


@cli.group(name="subscribers")
def subscribers_group() -> None:
    """Manage subscriber lists (subscribers/*.csv)."""


@subscribers_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
@pass_ctx
@handle_errors
def subscribers_list(ctx: Context, as_json: bool) -> None:
    """List subscribers with their status."""
    from digest import subscribers as subs

    config = ctx.config
    loaded = subs.load_lists(config.subscribers_dir, [t.name for t in config.themes] or None)
    with pipeline.open_store(config) as store:
        status = store.subscriber_status()
    for problem in loaded.problems:
        err_console.print(f"[yellow]warning:[/] {problem}")
    if as_json:
        for s in loaded.subscribers:
            row = {
                "email": s.email,
                "name": s.name,
                "themes": sorted(s.themes),
                "timezone": s.timezone,
                "status": str(status.get(s.email.lower(), "active")),
            }
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    table = Table()
    for col in ("email", "name", "themes", "status"):
        table.add_column(col)
    for s in loaded.subscribers:
        st = str(status.get(s.email.lower(), "active"))
        table.add_row(s.email, s.name, "; ".join(sorted(s.themes)) or "(all)", st)
    console.print(table)


@subscribers_group.command(name="add")
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--themes", default="", help="';'-separated theme names (default: all).")
@click.option("--timezone", default="", help="IANA time zone of the subscriber.")
@click.option("--list", "list_name", default="subscribers.csv", show_default=True, help="List file in subscribers/.")
@pass_ctx
@handle_errors
def subscribers_add(ctx: Context, email: str, name: str, themes: str, timezone: str, list_name: str) -> None:
    """Add one subscriber to a list file."""
    from digest import subscribers as subs

    config = ctx.config
    chosen = tuple(t.strip() for t in themes.split(";") if t.strip())
    known = {t.name for t in config.themes}
    unknown = [t for t in chosen if known and t not in known]
    if unknown:
        raise ConfigError(f"--themes: unknown theme {unknown[0]!r}; known: {', '.join(sorted(known))}")
    sub = subs.add_subscriber(config.subscribers_dir / list_name, email, name, chosen, timezone or None)
    console.print(f"added {sub.email}")


@subscribers_group.command(name="remove")
@click.argument("email")
@pass_ctx
@handle_errors
def subscribers_remove(ctx: Context, email: str) -> None:
    """Remove a subscriber from the list files."""
    from digest import subscribers as subs

    if not subs.remove_subscriber(ctx.config.subscribers_dir, email):
        raise ConfigError(f"{email}: not on any list in {ctx.config.subscribers_dir}")
    console.print(f"removed {email}")


@subscribers_group.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--list", "list_name", default="subscribers.csv", show_default=True, help="List file in subscribers/.")
@pass_ctx
@handle_errors
def subscribers_import(ctx: Context, file: Path, list_name: str) -> None:
    """Import a CSV of subscribers (bad rows are reported, the rest load)."""
    from digest import subscribers as subs

    config = ctx.config
    result = subs.import_file(file, config.subscribers_dir / list_name, [t.name for t in config.themes] or None)
    for problem in result.problems:
        err_console.print(f"[yellow]skipped:[/] {problem}")
    console.print(f"imported {result.added}, {result.skipped_duplicates} already subscribed")
    if result.problems:
        sys.exit(1)
