"""The worker: Procrastinate tasks that call the pipeline, and ``run_worker``.

``send_batch`` sends one batch through ``pipeline.batches.BatchSender``
(the local sender and ledger; no send logic here) over one SMTP
connection, so a worker with concurrency N holds at most N connections
and a killed one leaves at most N rows in doubt. Per relay, a worker runs
at most that relay's ``connections`` batches at once and shares one rate
limit among its threads. A batch whose rows were refused for now fails,
and Procrastinate retries it with backoff.

Every worker also defers the periodic tasks; Procrastinate's
``procrastinate_periodic_defers`` unique constraint makes each tick run
once however many workers there are:

- ``retry_stalled``: batches held by a worker whose heartbeat stopped for
  ``[workers] stalled_after`` seconds have their claims marked in doubt
  (``unknown``) and are queued again;
- ``plan``: what ``digest run`` does, queueing instead of sending, at
  ``[digest] schedule`` (or ``[workers] plan_cron``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

import procrastinate
import psycopg
from procrastinate import JobContext, RetryStrategy
from procrastinate import exceptions as pexc
from procrastinate.app import WorkerOptions

from digest.config import Config, RelaySettings
from digest.errors import DigestError, SendError
from digest.pipeline.batches import BatchSender, run_batches
from digest.pipeline.gather import open_store
from digest.send import SmtpSender, TokenBucket, make_sender
from digest.store import Store
from digest.workers.queue import (
    PERIODIC_QUEUE,
    PLAN_TASK,
    SEND_TASK,
    STALLED_TASK,
    JobQueue,
    make_app,
    queue_error,
)

log = logging.getLogger("digest.workers")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BatchRefused(SendError):
    """Some rows of a batch were refused for now: the job fails and is retried with backoff."""


@dataclasses.dataclass(slots=True)
class _Relay:
    """One relay as a worker holds it: its settings, a slot per allowed connection, one rate limit."""

    settings: RelaySettings | None
    slots: threading.BoundedSemaphore
    bucket: TokenBucket | None


class Runtime:
    """What one worker process shares between its tasks: the store, the relays' caps, the issues loaded."""

    def __init__(
        self, config: Config, concurrency: int | None = None, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.config, self.clock = config, clock
        self.stopping = threading.Event()
        self._store: Store | None = None
        self._issues: dict[str, BatchSender] = {}
        self._lock = threading.Lock()
        s = config.sender
        relays: list[RelaySettings | None] = list(s.relays) or [None]
        self.relays = {
            (r.name if r else ""): _Relay(
                r,
                # Without [[sender.relays]] the one relay gets every connection the worker holds.
                threading.BoundedSemaphore(r.connections if r else (concurrency or s.connections)),
                TokenBucket(rate) if (rate := (r.rate if r else s.rate)) > 0 else None,
            )
            for r in relays
        }

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.config)
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def issue(self, key: str) -> BatchSender:
        with self._lock:
            found = self._issues.get(key)
        if found is None:
            found = BatchSender(self.config, self.store, key, self.clock())
            with self._lock:
                self._issues[key] = found
        return found

    def sender(self, relay: _Relay) -> SmtpSender:
        """A one-connection sender for ``relay``, on the worker's shared rate limit for it."""
        r = relay.settings
        base = self.config.sender
        settings = dataclasses.replace(base, connections=1, rate=0)
        if r is not None:
            settings = dataclasses.replace(
                settings,
                host=r.host,
                port=r.port,
                security=r.security,
                username=r.username,
                password=r.password,
            )
        sender = make_sender(settings)
        if not isinstance(sender, SmtpSender):
            raise SendError("the workers send over SMTP: set [sender] transport = 'smtp'")
        sender.bucket = relay.bucket
        return sender

    def send_batch(self, issue: str, batch: int, emails: list[str], relay: str) -> None:
        held = self.relays.get(relay)
        if held is None:
            raise SendError(f"batch {batch} of issue {issue} is for relay {relay!r}, which is not configured here")
        with held.slots:
            report = self.issue(issue).send(
                self.store, emails, self.sender(held), clock=self.clock, interrupt=self.stopping
            )
        log.info(
            "issue %s batch %d: %d sent, %d to retry, %d failed, %d unknown, %d skipped",
            *(issue, batch, report.sent, report.failed_temporary, report.failed_permanent),
            *(report.unknown, report.skipped),
        )
        # Rows of the batch still to send at some time from now on: not tried (the worker is stopping),
        # or refused for now. The job fails, and Procrastinate runs it again after a wait.
        left = self.store.due_among(issue, emails, self.clock() + dt.timedelta(days=3650))
        if left:
            why = "the worker stopped" if self.stopping.is_set() else "refused for now"
            refused = BatchRefused(f"issue {issue} batch {batch}: {len(left)} message(s) {why}; retried later")
            log.warning("%s", refused)
            raise refused

    def release_stalled(self, issue: str, emails: list[str]) -> list[str]:
        return self.store.release_claims_among(issue, emails, self.clock())

    def plan(self, timestamp: int) -> None:
        """``digest run`` with the workers: fetch, then queue unfinished issues and the due one."""
        log.info("plan tick %d", timestamp)
        with JobQueue(self.config) as queue:
            report = run_batches(self.config, self.store, queue, clock=self.clock)
        for done in report.planned:
            log.info("issue %s: %d batch(es) queued, %d already", done.issue_key, done.queued, done.already_queued)
        if report.skipped:
            log.info("nothing sent: %s", report.skipped)
        for problem in report.problems:
            log.error("%s", problem)


def plan_cron(config: Config) -> str:
    """The periodic plan's cron line: ``[workers] plan_cron``, else every minute (checked against the schedule)."""
    return config.workers.plan_cron or "* * * * *"


def schedule_due(config: Config, timestamp: int) -> bool:
    """Whether ``[digest] schedule`` fell due in the minute that ends at ``timestamp``."""
    from digest.schedule import cron_trigger

    end = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    fire = cron_trigger(config.digest.schedule, config.digest.timezone).get_next_fire_time(
        None, end - dt.timedelta(seconds=59)
    )
    return fire is not None and fire <= end


def stalled_cron(config: Config) -> str:
    """Look for stalled batches three times per ``stalled_after`` (at least once a second)."""
    every = max(1, min(59, int(config.workers.stalled_after // 3)))
    return f"* * * * * */{every}"


def build_app(config: Config, runtime: Runtime) -> procrastinate.App:
    """The worker's app: ``send_batch`` and the two periodic tasks, bound to ``runtime``."""
    app = make_app(config)
    retry = RetryStrategy(max_attempts=12, wait=1, exponential_wait=2, retry_exceptions={DigestError})

    @app.task(name=SEND_TASK, retry=retry, pass_context=True)
    def send_batch(context: JobContext, issue: str, batch: int, emails: list[str], relay: str = "") -> None:
        job_id = context.job.id
        assert job_id is not None
        runtime.store.hold_batch(job_id, context.worker_name or "?", issue, runtime.clock())
        try:
            runtime.send_batch(issue, batch, emails, relay)
        finally:
            runtime.store.release_batch(job_id)  # not reached when killed: the row names who held it

    @app.periodic(cron=stalled_cron(config), periodic_id="stalled")
    @app.task(name=STALLED_TASK, queue=PERIODIC_QUEUE, queueing_lock=STALLED_TASK, pass_context=True)
    async def retry_stalled(context: JobContext, timestamp: int) -> None:
        stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=config.workers.stalled_after)
        for job in stalled:
            if job.task_name == SEND_TASK:
                kw = job.task_kwargs
                # The worker is gone: what it had claimed may or may not have gone out.
                doubted = await asyncio.to_thread(runtime.release_stalled, str(kw["issue"]), list(kw["emails"]))  # type: ignore[arg-type]
                log.warning(
                    "batch %s of issue %s: its worker stopped; %d message(s) in doubt, the rest queued again",
                    kw.get("batch"),
                    kw.get("issue"),
                    len(doubted),
                )
            await app.job_manager.retry_job(job)

    @app.periodic(cron=plan_cron(config), periodic_id="plan")
    @app.task(name=PLAN_TASK, queue=PERIODIC_QUEUE, lock=PLAN_TASK, queueing_lock=PLAN_TASK)
    def plan(timestamp: int) -> None:
        if config.workers.plan_cron or schedule_due(config, timestamp):
            runtime.plan(timestamp)

    del send_batch, retry_stalled, plan  # registered on the app
    return app


def run_worker(config: Config, *, concurrency: int | None = None, queues: tuple[str, ...] = ()) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the exit code (143/130 after such a stop).

    On the signal no new message is claimed: the transactions in flight finish
    and are recorded, and the batches left unfinished are queued again.
    """
    n = concurrency or config.sender.connections
    runtime = Runtime(config, n)
    app = build_app(config, runtime)
    stalled = config.workers.stalled_after
    name = f"{socket.gethostname()}:{os.getpid()}"

    options: WorkerOptions = {
        "name": name,
        "concurrency": n,
        "update_heartbeat_interval": max(0.5, stalled / 4),
        "stalled_worker_timeout": stalled,
        "delete_jobs": "successful",
        "fetch_job_polling_interval": 1.0,
        "install_signal_handlers": False,  # ours, below: they also stop the batches in progress
    }
    if queues:
        options["queues"] = list(queues)

    async def main() -> int:
        # Sync tasks run in the loop's default executor: give it a thread per connection (and spares).
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(n + 4))
        got: list[int] = []

        def stop(signum: int) -> None:
            # Stop claiming: the messages in flight finish and are recorded; the batches end early
            # (and are queued again, see send_batch); Procrastinate waits for them, then returns.
            got.append(signum)
            runtime.stopping.set()
            task.cancel()

        async with app.open_async():
            task = asyncio.create_task(app.run_worker_async(**options))
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop, sig)
            with contextlib.suppress(asyncio.CancelledError):  # our own stop, above
                await task
        return 128 + got[0] if got else 0

    log.info("worker %s: %d connection(s), queues %s", name, n, ", ".join(queues) or "all")
    try:
        return asyncio.run(main())
    except (psycopg.Error, pexc.ProcrastinateException) as exc:
        # The database went away under the worker: one line; systemd restarts it.
        raise queue_error(exc) from exc
    finally:
        runtime.stopping.set()
        runtime.close()
