"""``digest init``, ``digest fetch`` and ``digest entries``."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from digest.cli.base import (
    Context,
    cli,
    console,
    err_console,
    handle_errors,
    parse_date,
    pass_ctx,
    pipeline,
    utcnow,
)
from digest.config import Config
from digest.errors import ConfigError
from digest.models import FetchStatus, SourceResult


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@handle_errors
def init(directory: Path) -> None:
    """Scaffold a working folder: digest.toml, templates/, subscribers/, sample sources."""
    from digest.scaffold import scaffold

    made = scaffold(directory)
    # Paths are printed as they are: a folder named like "[x]" is not console markup.
    for path in made:
        console.print(f"created {path}", markup=False)
    console.print(f"\nNext: cd {directory} && digest fetch && digest preview", markup=False)


STATUS_STYLE = {
    FetchStatus.OK: "green",
    FetchStatus.NOT_MODIFIED: "cyan",
    FetchStatus.FAILED: "red",
    FetchStatus.BROKEN: "yellow",
}


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document (for monitoring).")
@pass_ctx
@handle_errors
def fetch(ctx: Context, as_json: bool) -> None:
    """Gather new entries from every source; print a per-source report."""
    config = ctx.config
    with pipeline.open_store(config) as store:
        lines = _fetch_with_progress(config, store)
    if as_json:
        from digest.cli.reports import emit, fetch_report

        emit(fetch_report(lines))
    else:
        print_fetch(lines)
    if any(line.result.status in (FetchStatus.FAILED, FetchStatus.BROKEN) for line in lines):
        sys.exit(1)


def _fetch_with_progress(config: Config, store: Any) -> list[pipeline.FetchLine]:
    if not err_console.is_terminal or len(config.sources) < 2:
        return pipeline.fetch_all(config, store, utcnow())
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("fetching", total=len(config.sources))

        def advance(result: SourceResult) -> None:
            bar.update(task, advance=1, description=result.source[:30])

        return pipeline.fetch_all(config, store, utcnow(), progress=advance)


def print_fetch(lines: list[pipeline.FetchLine]) -> None:
    """The per-source table, then one full line per failed or broken source.

    Source names and reasons come from the config and from the network, so
    they are plain ``Text``, never console markup. Reasons go below the table
    because a table cell wraps and truncates them at the console's width,
    which in a cron mail or a log is 80 columns.
    """
    table = Table(title="fetch", title_justify="left")
    for col in ("source", "new", "updated", "unchanged", "status", "time"):
        table.add_column(col, justify="right" if col in ("new", "updated", "unchanged", "time") else "left")
    for line in lines:
        r = line.result
        c = line.counts
        status = Text(r.status.value, style=STATUS_STYLE[r.status])
        table.add_row(Text(r.source), str(c.new), str(c.updated), str(c.unchanged), status, f"{r.elapsed:.2f}s")
    console.print(table)
    for line in lines:
        r = line.result
        if r.error:
            console.print(Text.assemble(r.source, ": ", (r.status.value, STATUS_STYLE[r.status]), ": ", r.error))
        if r.notes:
            console.print(Text.assemble(r.source, ": ", ("notes", "yellow"), ": ", describe_notes(r)))
    total = sum(line.counts.new for line in lines)
    bad = sum(1 for line in lines if line.result.status in (FetchStatus.FAILED, FetchStatus.BROKEN))
    console.print(f"{total} new entries from {len(lines)} sources; {bad} failed")


_NOTES = {
    "dropped_links": "{n} bad link{s} dropped (entries kept)",
    "dropped_entries": "{n} unreadable entr{ies} left out",
    "bad_dates": "{n} date{s} outside 1970-2100 (first-seen date used)",
    "cut_entries": "{n} older entr{ies} left out (max_entries)",
    "cut_texts": "{n} text{s} cut (max_text)",
}


def describe_notes(result: SourceResult) -> str:
    """What parsing dropped or cut, in words: "2 bad links dropped (entries kept); 1 date outside …"."""
    parts = []
    for key, n in result.notes.items():
        plural = n != 1
        parts.append(_NOTES[key].format(n=n, s="s" if plural else "", ies="ies" if plural else "y"))
    return "; ".join(parts)


def fetch_line_to_dict(line: pipeline.FetchLine) -> dict[str, Any]:
    """One source's fetch report as JSON: status, counts, error, and what parsing dropped or cut."""
    r, c = line.result, line.counts
    return {
        "source": r.source,
        "status": r.status.value,
        "new": c.new,
        "updated": c.updated,
        "unchanged": c.unchanged,
        "error": r.error or None,
        "elapsed": round(r.elapsed, 3),
        "dropped_links": r.dropped_links,
        "dropped_entries": r.dropped_entries,
        "bad_dates": r.bad_dates,
        "cut_entries": r.cut_entries,
        "cut_texts": r.cut_texts,
    }


@cli.command()
@click.option("--since", help="Only entries published on or after this date (YYYY-MM-DD).")
@click.option("--source", "source_name", help="Only entries of this source.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one entry per line.")
@pass_ctx
@handle_errors
def entries(ctx: Context, since: str | None, source_name: str | None, as_json: bool) -> None:
    """List stored entries with their theme and week."""
    from digest.codec import entry_to_dict

    config = ctx.config
    day = parse_date(since, "--since")
    start = dt.datetime.combine(day, dt.time(), tzinfo=config.digest.tz) if day else None
    if source_name is not None and source_name not in {s.name for s in config.sources}:
        raise ConfigError(f"--source: no source named {source_name!r} in {config.path}")
    with pipeline.open_store(config) as store:
        listed = store.entries(since=start, source=source_name)
        rows = pipeline.describe(config, listed)
        found = pipeline.credits(config, store, listed) if as_json else {}
        issued = store.entry_issues() if as_json else {}
    if as_json:
        out = sys.stdout
        for entry, theme, week in rows:
            data = entry_to_dict(entry, theme=theme, week=week)
            credit = found.get(entry.id)
            data["sources"] = list(credit.sources if credit else entry.sources)
            data["duplicate_of"] = credit.duplicate_of if credit else None
            data["issue"] = issued.get(entry.id)  # the issue it went out in, or null
            out.write(json.dumps(data, ensure_ascii=False) + "\n")
        return
    table = Table()
    for col in ("week", "theme", "published", "source", "title"):
        table.add_column(col)
    for entry, theme, week in rows:
        when = entry.when().astimezone(config.digest.tz).strftime("%Y-%m-%d")
        table.add_row(str(week), Text(theme), when, Text(entry.source), Text(entry.title))
    console.print(table)
    console.print(f"{len(rows)} entries")
