"""``digest sources``: every source's health, and adding, removing, importing and exporting them."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from digest.cli.base import Context, cli, console, err_console, handle_errors, pass_ctx, pipeline, utcnow
from digest.errors import ConfigError

#: How a fetch status shows in the history strip of ``digest sources``.
MARKS = {"ok": "✓", "not_modified": "=", "failed": "✗", "broken": "!"}


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


@cli.group(name="sources", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one source per line.")
@click.pass_context
@handle_errors
def sources_group(click_ctx: click.Context, as_json: bool) -> None:
    """Every source with its last fetches; `sources add|remove|import|export` edit the list."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.ensure_object(Context)
    config = ctx.config
    with pipeline.open_store(config) as store:
        reports = store.source_reports([s.name for s in config.sources])
    alert_after = config.fetch.alert_after
    if as_json:
        for source, rep in zip(config.sources, reports, strict=True):
            row: dict[str, Any] = {
                "name": source.name,
                "kind": str(source.kind),
                "url": source.url,
                "enabled": source.enabled,
                "last_success": _iso(rep.last_ok),
                "last_fetch": _iso(rep.last_fetch),
                "last_status": rep.last_status,
                "last_error": rep.last_error or None,
                "consecutive_failures": rep.failures,
                "alert": rep.failures >= alert_after,
                "broken": rep.last_status == "broken",
                "items_last_time": rep.items_last_time,
                "entries_stored": rep.entries_stored,
                "history": [
                    {
                        "at": _iso(h.fetched_at),
                        "status": h.status,
                        "new": h.new,
                        "updated": h.updated,
                        "unchanged": h.unchanged,
                        "items": h.items,
                        "error": h.error or None,
                    }
                    for h in rep.history
                ],
            }
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    table = Table(title="sources", title_justify="left")
    for col in ("source", "kind", "last ok", "status", "fails", "items", "stored", "last 12"):
        table.add_column(col, justify="right" if col in ("fails", "items", "stored") else "left")
    tz = config.digest.tz
    for source, rep in zip(config.sources, reports, strict=True):
        last_ok = rep.last_ok.astimezone(tz).strftime("%Y-%m-%d %H:%M") if rep.last_ok else "never"
        strip = "".join(MARKS.get(h.status, "?") for h in reversed(rep.history))
        style = "red" if rep.failures >= alert_after else ("yellow" if rep.failures else "")
        table.add_row(
            Text(source.name),
            str(source.kind),
            last_ok,
            Text(rep.last_status or "never", style=style) if source.enabled else Text("paused", style="dim"),
            str(rep.failures),
            "-" if rep.items_last_time is None else str(rep.items_last_time),
            str(rep.entries_stored),
            strip,
        )
    console.print(table)
    for source, rep in zip(config.sources, reports, strict=True):
        if rep.failures and rep.last_error:
            note = f" (failed {rep.failures} runs in a row)" if rep.failures >= alert_after else ""
            console.print(Text.assemble(source.name, ": ", rep.last_error, note))


@sources_group.command(name="add")
@click.argument("name")
@click.argument("url")
@click.option("--kind", type=click.Choice(["feed", "listing"]), default="feed", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["html", "text"]), default=None, help="Listings: html or text.")
@click.option("--theme", default=None, help="Default theme of the source's entries (a configured theme).")
@pass_ctx
@handle_errors
def sources_add(ctx: Context, name: str, url: str, kind: str, fmt: str | None, theme: str | None) -> None:
    """Add a source to digest.toml (checked like the rest of the file before it is written)."""
    from digest import urls
    from digest.config_edit import NewSource, add_sources

    url = url.strip()
    if "://" in url:
        try:
            urls.http_url(url)
        except urls.InvalidURL as exc:
            raise ConfigError(f"URL: {exc}") from None
    name = " ".join(name.split())
    if not name:
        raise ConfigError("NAME: must not be empty")
    if kind == "listing" and fmt != "text":
        raise ConfigError(
            "an html listing needs CSS selectors: add it to digest.toml by hand "
            "([[sources]] with [sources.selectors]), or pass --format text"
        )
    if kind == "feed" and fmt is not None:
        raise ConfigError("--format applies to --kind listing only")
    add_sources(ctx.config_path, [NewSource(name=name, url=url, kind=kind, theme=theme, format=fmt)])
    console.print(f"added source {name!r} ({kind}) to {ctx.config_path}", markup=False)


@sources_group.command(name="remove")
@click.argument("name")
@pass_ctx
@handle_errors
def sources_remove(ctx: Context, name: str) -> None:
    """Remove a source from digest.toml (its stored entries stay)."""
    from digest.config_edit import remove_source

    remove_source(ctx.config_path, name)
    console.print(f"removed source {name!r} from {ctx.config_path}", markup=False)


@sources_group.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_ctx
@handle_errors
def sources_import(ctx: Context, file: Path) -> None:
    """Add every feed of an OPML file (e.g. `r2e opmlexport`) as a source; known URLs are skipped."""
    from digest import urls
    from digest.config_edit import NewSource, add_sources
    from digest.opml import read_opml

    read = read_opml(file.read_bytes(), str(file))
    config = ctx.config
    known_urls = {urls.canonical(s.url) for s in config.sources if s.is_remote}
    names = {s.name.casefold() for s in config.sources}
    new: list[NewSource] = []
    skipped = 0
    for outline in read.outlines:
        canon = urls.canonical(outline.url)
        if canon in known_urls:
            skipped += 1
            continue
        known_urls.add(canon)
        # rss2email exports the URL as the text; a host name reads better as a source name.
        base = outline.title if outline.title and outline.title != outline.url else urls.parse(outline.url).host
        name, n = base, 1
        while name.casefold() in names:
            n += 1
            name = f"{base} ({n})"
        names.add(name.casefold())
        new.append(NewSource(name=name, url=outline.url))
    if new:
        add_sources(ctx.config_path, new)
    for problem in read.problems:
        err_console.print(problem, markup=False)
    console.print(
        f"imported {len(new)} feeds from {file}; {skipped} already configured; {len(read.problems)} skipped",
        markup=False,
    )
    if read.problems:
        sys.exit(1)


@sources_group.command(name="export")
@pass_ctx
@handle_errors
def sources_export(ctx: Context) -> None:
    """Print the feeds as OPML 2.0 (listings and local files are left out, with a note on stderr)."""
    from digest.opml import Outline, write_opml

    config = ctx.config
    outlines = []
    for s in config.sources:
        if str(s.kind) != "feed" or not s.is_remote:
            err_console.print(f"not exported: {s.name} (a {s.kind} at {s.url}; OPML lists remote feeds)", markup=False)
            continue
        outlines.append(Outline(title=s.name, url=s.url, category=s.theme or ""))
    sys.stdout.write(write_opml(config.digest.title, outlines, utcnow()))
