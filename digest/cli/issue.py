"""``digest build``, ``send``, ``run`` and ``schedule``: an issue from files to inboxes."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from digest import grouping
from digest.cli.base import (
    Context,
    StopSignals,
    cli,
    console,
    err_console,
    handle_errors,
    pass_ctx,
    pipeline,
    utcnow,
    warn,
    week_options,
    weeks_from,
)
from digest.cli.gather import print_fetch
from digest.cli.reports import emit, json_option, run_report, send_report
from digest.config import Config
from digest.errors import ConfigError
from digest.models import Delivery

if TYPE_CHECKING:
    from digest.send import SendEvent


@cli.command()
@week_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True)
@pass_ctx
@handle_errors
def build(ctx: Context, week: str | None, since: str | None, out: Path) -> None:
    """Render the issue to files (.html, .txt, .eml per variant) without touching state."""
    config = ctx.config
    weeks = weeks_from(config, week, since)
    with pipeline.open_store(config) as store:
        planned = pipeline.plan_issue(config, store, weeks)
        issue = planned.issue
        if not issue.entries:
            raise pipeline.no_entries(config, store, issue.key, "build")
        pipeline.check_size(config, issue)
        built = pipeline.build(config, store, issue, utcnow())
    try:
        paths = pipeline.write_build(config, built, out)
    except OSError as exc:
        # Nearly always the --out path itself: a missing parent, no permission, a read-only disk.
        raise ConfigError(f"--out: cannot write {out}: {exc.strerror or exc}") from exc
    # Warnings quote subscriber lists and paths are the user's: plain text, not console markup.
    for warning in (*planned.warnings, *built.warnings):
        warn(warning)
    console.print(f"issue {issue.key}: {len(issue.entries)} entries, {len(built.variants)} variant(s)")
    for path in paths:
        console.print(f"  {path}", markup=False)


@cli.command()
@week_options
@click.option("--dry-run", is_flag=True, help="Write every message to a Maildir beside the outbox; change nothing.")
@click.option("--wait", is_flag=True, help="If another run is sending, wait for it instead of exiting.")
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Try again the subscribers whose delivery failed (e.g. after fixing the relay settings).",
)
@click.option(
    "--resend-unknown",
    is_flag=True,
    help="Send again, with the same Message-ID, the messages in doubt (check the relay's log first).",
)
@click.option(
    "--accept-list-change",
    is_flag=True,
    help="Go on although the lists lost over half of the issue's recipients since it was frozen.",
)
@click.option(
    "--test",
    "test_to",
    metavar="ADDR[,ADDR...]",
    help="Send only a test (subject [TEST], header X-Digest-Test: 1) to these addresses (at most 10); no ledger.",
)
@click.option("--as", "as_email", metavar="SUBSCRIBER", help="With --test: the message this subscriber would get.")
@json_option
@pass_ctx
@handle_errors
def send(
    ctx: Context,
    week: str | None,
    since: str | None,
    dry_run: bool,
    wait: bool,
    retry_failed: bool,
    resend_unknown: bool,
    accept_list_change: bool,
    test_to: str | None,
    as_email: str | None,
    as_json: bool,
) -> None:
    """Send the issue to subscribers; idempotent (each subscriber gets it once)."""
    if test_to is None and as_email is not None:
        raise ConfigError("--as: only with --test ADDR")
    if test_to is not None:
        if dry_run or retry_failed or resend_unknown or accept_list_change or wait or as_json:
            raise ConfigError("--test: a test send takes only --week/--since and --as")
        _send_test(ctx, week, since, test_to, as_email)
        return
    config = ctx.config if dry_run else ctx.sending_config()
    weeks = weeks_from(config, week, since)
    if config.workers.enabled and not dry_run:
        from digest.cli.workers import queue_send

        queue_send(config, weeks, wait=wait, retry_failed=retry_failed, resend_unknown=resend_unknown)
        return
    with pipeline.open_store(config) as store, SendProgress() as progress, StopSignals() as stop:
        try:
            summary = pipeline.send_issue(
                config,
                store,
                weeks,
                clock=utcnow,
                dry_run=dry_run,
                wait=wait,
                retry_failed=retry_failed,
                progress=progress,
                resend_unknown=resend_unknown,
                accept_list_change=accept_list_change,
                interrupt=stop.event,
            )
        except pipeline.TooFewEntries as exc:
            if isinstance(exc, pipeline.IssueHeld):
                raise
            # An empty week: say which week has entries, with the command that sends it.
            raise pipeline.no_entries(config, store, grouping.issue_key(weeks), "send") from exc
    if as_json:
        emit(send_report(summary, dry_run=dry_run, outbox=maildir_of(config)))
    else:
        _print_send(summary, maildir_of(config))
    if stop.signum is not None:
        stop.report()
        sys.exit(stop.exit_code)
    if summary.failed:
        sys.exit(1)


def _send_test(ctx: Context, week: str | None, since: str | None, test_to: str, as_email: str | None) -> None:
    """``send --test``: the test message to a few addresses; the ledger is never touched."""
    from digest.pipeline.testsend import parse_addresses, send_test

    addresses = parse_addresses(test_to)  # a usage error before the config is even read
    config = ctx.sending_config()
    weeks = weeks_from(config, week, since)
    with pipeline.open_store(config) as store:
        done = send_test(config, store, weeks, addresses, clock=utcnow, as_email=as_email)
    r = done.report
    state = "frozen" if done.frozen else "not frozen (rendered as it is now; nothing was frozen)"
    console.print(
        f"test of issue {done.issue_key} ({state}), variant {done.variant}: {r.sent} sent to "
        f"{', '.join(done.addresses)}; subject {done.subject!r}",
        markup=False,
    )
    for email, code, error in r.problems:
        console.print(f"  {email}: {code or ''} {error}", markup=False)
    if r.failed:
        sys.exit(1)


@cli.command()
@click.option("--wait", is_flag=True, help="If another run is sending, wait for it instead of exiting.")
@json_option
@pass_ctx
@handle_errors
def run(ctx: Context, wait: bool, as_json: bool) -> None:
    """Cron one-shot: fetch, then build and send the issue that is due."""
    config = ctx.sending_config()
    if config.workers.enabled:
        from digest.cli.workers import queue_run

        sys.exit(queue_run(config, wait=wait))
    from digest.pipeline.alerts import source_alerts  # here: it loads the sender, which other commands skip

    with pipeline.open_store(config) as store, StopSignals() as stop:
        report = pipeline.run(config, store, clock=utcnow, wait=wait, interrupt=stop.event)
        alerts = source_alerts(config, store)
    if as_json:
        emit({**run_report(report, outbox=maildir_of(config)), "source_alerts": [a.as_json() for a in alerts]})
        if stop.signum is not None:
            sys.exit(stop.exit_code)
        sys.exit(report.exit_code)
    print_fetch(report.fetched)
    if report.bounces is not None:
        found = ", ".join(f"{k} {v}" for k, v in sorted(report.bounces.counts.items())) or "nothing new"
        console.print(f"bounce mailbox: {report.bounces.read} messages read: {found}", markup=False)
    for earlier in report.resumed:
        console.print(f"finishing issue {earlier.issue_key}, left unfinished by an earlier run:", markup=False)
        _print_send(earlier, maildir_of(config))
    if report.sent is not None:
        _print_send(report.sent, maildir_of(config))
    elif report.skipped:
        console.print(f"nothing sent: {report.skipped}", markup=False)
    for line in report.waiting:
        console.print(line, markup=False)
    if report.pruned is not None and (report.pruned.deliveries or report.pruned.entries):
        p = report.pruned
        console.print(f"pruned: {p.deliveries} ledger row(s) of {p.issues} issue(s), {p.entries} entries", markup=False)
    for problem in report.problems:
        err_console.print(Text.assemble(("error:", "bold red"), " ", problem), soft_wrap=True)
    for alert in alerts:
        err_console.print(Text.assemble(("alert:", "bold red"), " ", alert.line()), soft_wrap=True)
    if stop.signum is not None:
        stop.report()
        sys.exit(stop.exit_code)
    sys.exit(report.exit_code)


@cli.command()
@pass_ctx
@handle_errors
def schedule(ctx: Context) -> None:
    """Run the configured schedule as a long-running process (SIGTERM stops it cleanly).

    Checks the config and the secret first (exit 2 if either is wrong), then
    logs at INFO, with UTC timestamps: started, next run at, each run's
    result, stopped.
    """
    from digest.schedule import run_forever

    if ctx.log is not None:
        ctx.log.apply(default=logging.INFO, timestamps=True)
    if ctx.config.workers.enabled:
        raise ConfigError("digest schedule: with [workers] enabled the workers keep the schedule; run `digest worker`")
    run_forever(ctx.config_path)


class SendProgress:
    """A progress bar on a terminal (sent / failed / left, rate, ETA); a log line every 1000 messages otherwise."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._started = time.monotonic()
        self._shown = 0.0  # when the bar was last updated

    def __enter__(self) -> SendProgress:
        if err_console.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("sending"),
                BarColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("send", total=None, detail="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def __call__(self, event: SendEvent, total: int) -> None:
        now = time.monotonic()
        if self._bar is not None and now - self._shown < 0.1 and event.done < total:
            return  # the bar redraws 10 times a second: updating it per message cost as much as sending
        self._shown = now
        failed = event.failed_permanent + event.failed_temporary + event.unknown
        left = max(total - event.done, 0)
        rate = event.done / max(now - self._started, 1e-6)
        detail = f"{event.sent} sent · {failed} failed · {left} left · {rate:.0f}/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=event.done, total=total, detail=detail)
        elif event.done % 1000 == 0:
            err_console.print(detail)


def maildir_of(config: Config) -> Path | None:
    """Where a send puts its messages when the transport is a Maildir (else ``None``)."""
    return config.sender.maildir if config.sender.transport == "maildir" else None


def _doubt(error: str) -> str:
    """Why a row is in doubt: the process stopped while sending, or the reply to the data was lost."""
    if error.startswith("in doubt: the process stopped while sending"):
        return "in doubt: the process stopped while sending"
    return "in doubt: connection lost after the data was sent, before the reply"


def _print_doubts(summary: pipeline.SendSummary) -> None:
    """The rows in doubt, each with its address and why."""
    if not summary.unknown:
        return
    console.print(
        f"  {len(summary.unknown)} message(s) in state 'unknown': the relay may or may not have them. "
        "Check the relay's log, then send them again (same Message-ID) with "
        f"`digest send --resend-unknown --week {summary.issue_key}`",
        markup=False,
    )
    for email, error in summary.in_doubt:
        console.print(f"    {email}: {_doubt(error)}", markup=False)


def _print_send(summary: pipeline.SendSummary, maildir: Path | None = None) -> None:
    r = summary.report
    outbox = summary.outbox or maildir
    where = f" into {outbox}" if outbox else ""
    if summary.due == 0:
        done = ", ".join(f"{n} {state.value}" for state, n in summary.counts.items() if n)
        console.print(f"issue {summary.issue_key}: nothing due ({done or 'no subscribers'})", markup=False)
        _print_doubts(summary)
        if summary.counts.get(Delivery.FAILED_PERMANENT) or summary.counts.get(Delivery.FAILED_TEMPORARY):
            console.print("  to try the failed ones again: digest send --retry-failed --week ...", markup=False)
        return
    console.print(
        f"issue {summary.issue_key}{where}: {r.sent} sent, {r.failed_permanent} failed permanently, "
        f"{r.failed_temporary} to retry, {r.unknown} unknown, {r.skipped} skipped; "
        f"{summary.no_match} subscriber(s) had no matching theme",
        markup=False,
    )
    for email, code, error in r.problems[:20]:
        console.print(f"  {email}: {code or ''} {error}", markup=False)
    _print_doubts(summary)
    for problem in summary.problems:
        warn(problem)
