"""``digest edit`` (the edition file of the next or a given issue) and ``digest approve`` (its frozen bytes)."""

from __future__ import annotations

from collections import Counter

import click

from digest import grouping
from digest.cli.base import Context, cli, console, handle_errors, parse_week, pass_ctx, pipeline, utcnow
from digest.errors import ConfigError
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


@cli.command(name="approve")
@click.option("--week", help="The issue's ISO week, like 2018-W02 (default: the issue waiting, else the due one).")
@click.option("--by", help="Who approves (default: the OS user).")
@pass_ctx
@handle_errors
def approve_cmd(ctx: Context, week: str | None, by: str | None) -> None:
    """Approve the frozen issue for subscribers: print what it holds and its fingerprint, record who and when."""
    from digest.pipeline import approval
    from digest.pipeline.run import weeks_of  # here: importing it loads the whole pipeline

    config = ctx.config
    name = approval.approver(by)
    now = utcnow()
    with pipeline.open_store(config) as store:
        if week is not None:
            wanted = str(parse_week(week))
            keys = [s.key for s in store.issue_summaries() if s.key.partition("..")[0] == wanted]
            key = keys[0] if keys else wanted
        else:
            waiting = store.awaiting_approval()
            key = max(waiting) if waiting else grouping.issue_key(pipeline.resolve_weeks(config, now))
        if store.frozen_issue(key) is None:
            raise ConfigError(
                f"--week: issue {key} is not frozen yet, so there is nothing to approve; "
                "`digest run` (or `digest send`) freezes it and mails the editors"
            )
        # The frozen issue, with any variant a subscriber who joined since needs: the bytes a send would send.
        built = pipeline.prepare(config, store, weeks_of(key), now)
        done = approval.approve(store, built, name, now)
    issue = built.issue
    console.print(f"issue {issue.key}: {len(issue.entries)} entries", markup=False)
    for section in issue.sections:
        console.print(f"  {section.theme} ({section.week}):", markup=False)
        for entry in section.entries:
            console.print(f"    - {entry.title} [{entry.source}]", markup=False)
    per_variant = Counter(v for _, v in built.audience.assignments if v is not None)
    console.print(f"variants: {len(built.variants)}", markup=False)
    for key_, rendered in sorted(built.variants.items()):
        console.print(f"  {key_}: {per_variant.get(key_, 0)} recipient(s), subject {rendered.subject!r}", markup=False)
    console.print(f"recipients: {sum(per_variant.values())}", markup=False)
    console.print(f"fingerprint: sha256:{done.approval.fingerprint}", markup=False)
    a = done.approval
    if done.fresh:
        console.print(f"approved by {a.approved_by} at {approval.when(config, a.approved_at)}", markup=False)
    else:
        console.print(
            f"already approved by {a.approved_by} at {approval.when(config, a.approved_at)}; nothing changed",
            markup=False,
        )
    if config.editorial.approval != "required":
        console.print("note: [editorial] approval is 'none', so issues go out without approval", markup=False)
