"""``digest db migrate``, ``worker``, ``status``, ``reconcile``, and ``send``/``run`` with ``[workers]``.

The worker commands need the ``workers`` extra; it is imported on first use
so the one-machine commands never pay for it.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import click
from rich.text import Text

from digest.cli.base import Context, cli, console, err_console, handle_errors, parse_week, pass_ctx, pipeline, utcnow
from digest.config import Config
from digest.errors import ConfigError
from digest.models import Delivery, IsoWeek

if TYPE_CHECKING:
    from digest.pipeline.batches import Planned


def _need_workers(config: Config, command: str) -> None:
    if not config.workers.enabled:
        raise ConfigError(f"{command}: needs [workers] enabled = true (and a PostgreSQL database)")


def print_planned(done: Planned) -> None:
    if done.already_queued:
        console.print(
            f"issue {done.issue_key}: nothing queued: {done.already_queued} batch(es) of it are queued or running",
            markup=False,
        )
    elif done.queued:
        console.print(
            f"issue {done.issue_key}: {done.due} message(s) queued in {done.queued} batch(es) for the workers",
            markup=False,
        )
    else:
        counts = ", ".join(f"{n} {state.value}" for state, n in done.counts.items() if n)
        console.print(f"issue {done.issue_key}: nothing due ({counts or 'no subscribers'})", markup=False)
    for warning in done.warnings:  # the lists' problems, as a local send says them
        err_console.print(Text.assemble(("warning:", "yellow"), " ", warning))


def queue_send(
    config: Config, weeks: tuple[IsoWeek, ...], *, wait: bool, retry_failed: bool, resend_unknown: bool
) -> None:
    """``digest send`` with ``[workers]``: freeze and plan as always, then queue the batches."""
    from digest.pipeline.batches import plan_batches
    from digest.workers.queue import JobQueue

    with pipeline.open_store(config) as store, JobQueue(config) as queue:
        done = plan_batches(
            config,
            store,
            weeks,
            queue,
            clock=utcnow,
            wait=wait,
            retry_failed=retry_failed,
            resend_unknown=resend_unknown,
        )
    print_planned(done)


def queue_run(config: Config, *, wait: bool) -> int:
    """``digest run`` with ``[workers]``: fetch, then queue unfinished issues and the due one; the exit code."""
    from digest.cli.gather import print_fetch
    from digest.pipeline.batches import run_batches
    from digest.workers.queue import JobQueue

    with pipeline.open_store(config) as store, JobQueue(config) as queue:
        report = run_batches(config, store, queue, clock=utcnow, wait=wait)
    print_fetch(report.fetched)
    for done in report.planned:
        print_planned(done)
    if report.skipped:
        console.print(f"nothing sent: {report.skipped}", markup=False)
    for line in report.waiting:
        console.print(line, markup=False)
    for problem in report.problems:
        err_console.print(Text.assemble(("error:", "bold red"), " ", problem), soft_wrap=True)
    return report.exit_code


@cli.group(name="db")
def db_group() -> None:
    """The database: migrations of the store (and of the workers' job queue)."""


@db_group.command(name="migrate")
@pass_ctx
@handle_errors
def db_migrate(ctx: Context) -> None:
    """Apply the store's migrations and, with [workers], Procrastinate's schema (idempotent)."""
    from digest.store import MIGRATIONS, Store

    config = ctx.config
    with Store.open(config.digest.database, migrations=()) as store:
        before = store.applied_migrations()
    with pipeline.open_store(config):
        pass  # opening migrates
    applied = sorted({m.number for m in MIGRATIONS} - before)
    console.print(f"store: {'migrations ' + ', '.join(map(str, applied)) + ' applied' if applied else 'up to date'}")
    if config.workers.enabled:
        from digest.workers.queue import JobQueue

        with JobQueue(config) as queue:
            made = queue.apply_schema()
        console.print(f"job queue: {'schema applied' if made else 'up to date'}")


@cli.command()
@click.option("--concurrency", type=click.IntRange(1, 512), default=None, help="SMTP connections to hold.")
@click.option("--queue", "queues", multiple=True, help="Only these queues (repeatable; default all).")
@pass_ctx
@handle_errors
def worker(ctx: Context, concurrency: int | None, queues: tuple[str, ...]) -> None:
    """Send queued batches and run the periodic tasks, until SIGTERM ([workers] enabled)."""
    config = ctx.config
    _need_workers(config, "digest worker")
    logging.getLogger("digest.workers").setLevel(logging.INFO)
    from digest.workers.queue import JobQueue, relay_queues
    from digest.workers.tasks import run_worker

    known = {*relay_queues(config), "periodic"}
    for q in queues:
        if q not in known:
            raise ConfigError(f"--queue: no queue {q!r} (queues: {', '.join(sorted(known))})")
    with JobQueue(config) as queue:
        queue.active("")  # fails with a clear message before the tables exist
    code = run_worker(config, concurrency=concurrency, queues=queues)
    if code:
        err_console.print(
            "interrupted: the messages in flight were sent and recorded; unfinished batches are queued again"
        )
        sys.exit(code)


@cli.command()
@click.option("--week", help="One issue, like 2018-W02 (default: those in progress).")
@pass_ctx
@handle_errors
def status(ctx: Context, week: str | None) -> None:
    """Per issue: to do, doing, sent, in doubt, and the workers that hold its batches."""
    config = ctx.config
    _need_workers(config, "digest status")
    from digest.workers.ops import issue_status, status_keys
    from digest.workers.queue import JobQueue

    now = utcnow()
    with pipeline.open_store(config) as store, JobQueue(config) as queue:
        keys = [parse_week(week) or ""] if week else status_keys(config, store, queue, now)
        shown = [issue_status(store, queue, k) for k in keys]
        beats = [hb for _, hb in queue.workers()]
    alive = sum(1 for hb in beats if (now - hb).total_seconds() < config.workers.stalled_after)
    console.print(f"workers: {alive} alive, {len(beats) - alive} without a recent heartbeat", markup=False)
    if not shown:
        console.print("no issue in progress", markup=False)
    for st in shown:
        c = st.counts
        console.print(
            f"issue {st.issue_key}: {st.todo} to do, {st.doing} doing, {c[Delivery.SENT]} sent, "
            f"{len(st.in_doubt)} in doubt, {c[Delivery.FAILED_PERMANENT]} failed, {c[Delivery.SKIPPED]} skipped",
            markup=False,
        )
        queued, running, failed = st.batches("todo"), st.batches("doing"), st.batches("failed")
        console.print(f"  batches: {len(queued)} queued, {len(running)} running, {len(failed)} failed", markup=False)
        for job in running:
            name = st.holders.get(job.id, ("a worker",))[0]
            if job.heartbeat is None:
                beat = "gone (no heartbeat): re-queued once stalled"
            else:
                beat = f"heartbeat {(now - job.heartbeat).total_seconds():.0f}s ago"
            console.print(
                f"  batch {job.batch} ({job.size} rows, queue {job.queue}) on {name}, {beat}",
                markup=False,
            )
        for row in st.in_doubt:
            console.print(f"  in doubt: {row.email}: {row.last_error or ''}", markup=False)


@cli.command()
@click.option("--week", required=True, help="The issue, like 2018-W02.")
@click.option("--resend-in-doubt", is_flag=True, help="Send the rows in doubt again (same Message-ID).")
@pass_ctx
@handle_errors
def reconcile(ctx: Context, week: str, resend_in_doubt: bool) -> None:
    """Make the ledger and the job queue agree again; queue what is still due."""
    config = ctx.config
    _need_workers(config, "digest reconcile")
    from digest.workers.ops import reconcile as do_reconcile
    from digest.workers.queue import JobQueue

    key = parse_week(week)
    assert key is not None
    weeks = (IsoWeek.parse(key),)
    with pipeline.open_store(config) as store, JobQueue(config) as queue:
        done = do_reconcile(config, store, queue, weeks, clock=utcnow, resend_in_doubt=resend_in_doubt)
    for email in done.abandoned:
        console.print(f"  in doubt (no batch holds its claim): {email}", markup=False)
    print_planned(done.planned)
