"""``digest edit``: the edition file of the next (or a given) issue, for the editor to shape."""

from __future__ import annotations

import click

from digest.cli.base import Context, cli, console, handle_errors, parse_week, pass_ctx, pipeline, utcnow
from digest.models import IsoWeek


@cli.command(name="edit")
@click.option("--week", help="The issue's ISO week, like 2018-W02 (default: the next issue).")
@pass_ctx
@handle_errors
def edit_cmd(ctx: Context, week: str | None) -> None:
    """Create editions/<issue>.md listing the issue's entries (never overwrites); print its path."""
    from digest import editions, grouping

    config = ctx.config
    now = utcnow()
    with pipeline.open_store(config) as store:
        if week is not None:
            weeks: tuple[IsoWeek, ...] = (IsoWeek.parse(str(parse_week(week))),)
        else:
            weeks = pipeline.resolve_weeks(config, now)
            if store.frozen_issue(grouping.issue_key(weeks)) is not None:
                # That one is frozen (sent or sending): the next issue is this week's.
                weeks = (IsoWeek.of(now, config.digest.tz),)
        # Without the edition: the file lists every entry of the issue, pinned or skipped.
        issue = pipeline.make_issue(config, store, weeks, edition=False)
    folder = pipeline.editions_dir(config)
    path = editions.edition_path(folder, issue.key)
    if path.exists():
        console.print(f"{path} exists; left as it is", markup=False)
        return
    folder.mkdir(parents=True, exist_ok=True)
    # "x": never overwrite, even if the file appeared since the check above.
    with path.open("x", encoding="utf-8") as f:
        f.write(editions.template_for(issue))
    console.print(str(path), markup=False)
