"""``digest init``, ``digest fetch`` and ``digest entries``."""

from __future__ import annotations

import datetime as dt
import json
import sys
import textwrap
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
    parse_week,
    pass_ctx,
    pipeline,
    utcnow,
)
from digest.config import Config
from digest.configspec import did_you_mean
from digest.errors import ConfigError
from digest.models import OTHER_THEME, Entry, FetchStatus, IsoWeek, SourceResult


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@handle_errors
def init(directory: Path) -> None:
    """Scaffold a working folder: digest.toml, templates/, subscribers/, sample sources. Never overwrites a file."""
    from digest.scaffold import scaffold

    done = scaffold(directory)
    # Paths are printed as they are: a folder named like "[x]" is not console markup.
    for path in done.made:
        console.print(f"created {path}", markup=False)
    for path in done.kept:
        console.print(f"kept {path} (exists; not overwritten)", markup=False)
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
        # Text, not str: a str cell is read as console markup first, which took most of the
        # table's time with hundreds of sources.
        numbers = (Text(str(c.new)), Text(str(c.updated)), Text(str(c.unchanged)))
        table.add_row(Text(r.source), *numbers, status, Text(f"{r.elapsed:.2f}s"))
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
@click.option("--week", help="Only entries of this ISO week, like 2018-W02.")
@click.option("--source", "source_name", help="Only entries of this source.")
@click.option("--theme", help="Only entries of this theme.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one entry per line.")
@pass_ctx
@handle_errors
def entries(
    ctx: Context, since: str | None, week: str | None, source_name: str | None, theme: str | None, as_json: bool
) -> None:
    """List stored entries with their theme and week."""
    from digest.codec import entry_to_dict

    config = ctx.config
    tz = config.digest.tz
    day = parse_date(since, "--since")
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz) if day else None
    until = None
    picked = parse_week(week)
    if picked is not None:
        week_start, until = IsoWeek.parse(picked).bounds(tz)
        start = max(start, week_start) if start else week_start
    if source_name is not None and source_name not in {s.name for s in config.sources}:
        raise ConfigError(f"--source: no source named {source_name!r} in {config.path}")
    theme = known_theme(config, theme)
    with pipeline.open_store(config) as store:
        listed = store.entries(since=start, until=until, source=source_name)
        rows = [row for row in pipeline.describe(config, listed) if theme is None or row[1] == theme]
        listed = [entry for entry, _, _ in rows]
        found = pipeline.credits(config, store, listed) if as_json else {}
        issued = store.entry_issues() if as_json else {}
    if as_json:
        out = sys.stdout
        for entry, theme_of, week_of in rows:
            data = entry_to_dict(entry, theme=theme_of, week=week_of)
            credit = found.get(entry.id)
            data["sources"] = list(credit.sources if credit else entry.sources)
            data["duplicate_of"] = credit.duplicate_of if credit else None
            data["issue"] = issued.get(entry.id)  # the issue it went out in, or null
            out.write(json.dumps(data, ensure_ascii=False) + "\n")
        return
    print_entries(config, rows)


def known_theme(config: Config, theme: str | None) -> str | None:
    """``--theme`` as the config spells it (case aside); an unknown theme is a usage error naming the known ones."""
    if theme is None:
        return None
    names = [t.name for t in config.themes] + [OTHER_THEME]
    for name in names:
        if name.casefold() == theme.strip().casefold():
            return name
    raise ConfigError(f"--theme: no theme named {theme!r}{did_you_mean(theme, names)}; themes: {', '.join(names)}")


def print_entries(config: Config, rows: list[tuple[Entry, str, IsoWeek]]) -> None:
    """Entries under a heading per week: the date, then the title (wrapped, never cut) over its theme and source.

    A title gets the width of the terminal less the date (some 65 columns of
    80); a table of five boxed columns squeezed it into a strip of a few
    words a line. Lines are wrapped here, at words, with no padding after them.
    """
    indent = " " * (2 + 10 + 2)
    width = max(console.width - len(indent), 20)
    shown: IsoWeek | None = None
    for entry, theme, week in rows:
        if week != shown:
            if shown is not None:
                console.print()
            console.print(Text(str(week), style="bold"))
            shown = week
        when = entry.when().astimezone(config.digest.tz).strftime("%Y-%m-%d")
        # Titles, themes and source names are the feeds' and the config's words: plain Text, never markup.
        lines = textwrap.wrap(entry.title, width, break_on_hyphens=False) or ["(untitled)"]
        console.print(Text(f"  {when}  {lines[0]}"))
        for line in lines[1:]:
            console.print(Text(indent + line))
        for line in textwrap.wrap(f"{theme} · {entry.source}", width, break_on_hyphens=False):
            console.print(Text(indent + line, style="dim"))
    console.print(f"{len(rows)} entries")
