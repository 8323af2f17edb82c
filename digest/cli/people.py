"""``digest subscribers add|remove|list|import|reactivate`` (``export`` and ``forget`` are in ``privacy``).

Names, addresses and CSV cells are the subscribers' own text: they are
printed as plain text, never as rich markup.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from digest.cli.base import (
    Context,
    cli,
    console,
    err_console,
    handle_errors,
    pass_ctx,
    pipeline,
    utcnow,
)
from digest.errors import ConfigError, SubscriberError
from digest.models import Subscriber, SubscriberStatus

_SEPARATORS = ("/", "\\")


def list_file(folder: Path, name: str) -> Path:
    """The list file ``name`` inside ``folder``; ``ConfigError`` unless a plain ``*.csv`` file name.

    Only such names are read back as lists, and a path could write anywhere.
    """
    plain = (
        name.endswith(".csv")
        and not name.startswith(".")
        and not any(sep in name for sep in _SEPARATORS)
        and name.isprintable()
    )
    if not plain:
        raise ConfigError(f"--list: not a plain file name ending in .csv: {name!r}")
    return folder / name


def _notice(label: str, message: str) -> Text:
    return Text.assemble((label, "yellow"), " ", message)


@cli.group(name="subscribers")
def subscribers_group() -> None:
    """Manage subscriber lists (subscribers/*.csv)."""


@subscribers_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines output.")
@pass_ctx
@handle_errors
def subscribers_list(ctx: Context, as_json: bool) -> None:
    """List subscribers (list files and web sign-ups) with their status."""
    from digest import subscribers as subs

    config = ctx.config
    loaded = subs.load_lists(config.subscribers_dir, [t.name for t in config.themes] or None)
    with pipeline.open_store(config) as store:
        status = store.subscriber_status()
        # List rows (with any theme choice made on /p/) and confirmed web sign-ups.
        everyone = list(store.join_lists(loaded.subscribers))
        shown = {s.email.lower() for s in everyone}
        web = {w.email: w for w in store.web_subscribers()}
    listed = {s.email.lower() for s in loaded.subscribers}
    rows = [(s, str(status.get(s.email.lower(), "active"))) for s in everyone]
    for w in web.values():
        if w.email not in shown:  # a web sign-up still to be confirmed
            rows.append((Subscriber(w.address, w.name, w.themes), str(status.get(w.email, w.status))))
    for problem in loaded.problems:
        err_console.print(_notice("warning:", problem))
    if as_json:
        for s, st in rows:
            row = {
                "email": s.email,
                "name": s.name,
                "themes": sorted(s.themes),
                "timezone": s.timezone,
                "status": st,
                "source": "list" if s.email.lower() in listed else "web",
            }
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    table = Table()
    for col in ("email", "name", "themes", "status"):
        table.add_column(col)
    for s, st in rows:
        table.add_row(Text(s.email), Text(s.name), Text("; ".join(sorted(s.themes)) or "(all)"), Text(st))
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
    path = list_file(config.subscribers_dir, list_name)
    with pipeline.open_store(config) as store:
        if store.forgotten_check()(email):
            raise ConfigError(f"{email} asked to be forgotten: only their own sign-up on /subscribe can add them again")
    try:
        address = subs.normalise_email(email)
    except SubscriberError as exc:
        raise ConfigError(str(exc)) from exc
    with pipeline.open_store(config) as store:
        record = store.status_record(address)
    left = record is not None and record.status is not SubscriberStatus.ACTIVE
    try:
        sub = subs.add_subscriber(path, email, name, chosen, timezone or None)
    except SubscriberError as exc:
        if not left:
            # The address or options given are wrong: a usage error, like a bad option.
            raise ConfigError(str(exc)) from exc
    if record is not None and left:
        # On the list or not, no issue goes to them: say so rather than "added".
        console.print(
            f"{address} is {record.status} (since {record.since:%Y-%m-%d %H:%M} UTC, {record.how}); "
            f"use `digest subscribers reactivate {address} --reason ...` to re-activate",
            markup=False,
        )
        return
    console.print(f"added {sub.email}", markup=False)


#: Longest reason kept; it is a note for people, not a document.
_MAX_REASON = 500


@subscribers_group.command(name="reactivate")
@click.argument("email")
@click.option("--reason", required=True, help="Why (e.g. 'asked by phone on 2018-01-20'); recorded.")
@pass_ctx
@handle_errors
def subscribers_reactivate(ctx: Context, email: str, reason: str) -> None:
    """Re-activate an unsubscribed or bounced address (recorded with the reason)."""
    from digest import subscribers as subs

    why = " ".join(reason.split())
    if not why or not why.isprintable():
        raise ConfigError("--reason: say why the address is re-activated (printable text)")
    if len(why) > _MAX_REASON:
        raise ConfigError(f"--reason: at most {_MAX_REASON} characters, got {len(why)}")
    try:
        address = subs.normalise_email(email)
    except SubscriberError as exc:
        raise ConfigError(str(exc)) from exc
    with pipeline.open_store(ctx.config) as store:
        before = store.reactivate(address, utcnow(), why)
    if before is None:
        raise SubscriberError(f"{address} is not unsubscribed or bounced: nothing to re-activate")
    console.print(
        f"re-activated {address} (was {before.status} since {before.since:%Y-%m-%d %H:%M} UTC): {why}",
        markup=False,
    )


@subscribers_group.command(name="remove")
@click.argument("email")
@pass_ctx
@handle_errors
def subscribers_remove(ctx: Context, email: str) -> None:
    """Remove a subscriber from the list files."""
    from digest import subscribers as subs

    if not subs.remove_subscriber(ctx.config.subscribers_dir, email):
        raise ConfigError(f"{email}: not on any list in {ctx.config.subscribers_dir}")
    console.print(f"removed {email}", markup=False)


@subscribers_group.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--list", "list_name", default="subscribers.csv", show_default=True, help="List file in subscribers/.")
@pass_ctx
@handle_errors
def subscribers_import(ctx: Context, file: Path, list_name: str) -> None:
    """Import a CSV of subscribers (bad rows are reported, the rest load)."""
    from digest import subscribers as subs

    config = ctx.config
    dest = list_file(config.subscribers_dir, list_name)
    with pipeline.open_store(config) as store:
        forgotten = store.forgotten_check()
    result = subs.import_file(file, dest, [t.name for t in config.themes] or None, forgotten)
    for problem in result.problems:
        err_console.print(_notice("skipped:", problem))
    console.print(f"imported {result.added}, {result.skipped_duplicates} already subscribed")
    if result.problems:
        sys.exit(1)
