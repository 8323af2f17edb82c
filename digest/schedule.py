"""The long-running scheduler: a cron trigger in the configured zone that calls the pipeline.

``digest schedule`` keeps one APScheduler 3 job, ``digest-weekly``, in the
same database as everything else (table ``apscheduler_jobs``). The job fires
at ``[digest] schedule`` (``"mon 08:00"``) in ``[digest] timezone`` and calls
:func:`scheduled_run`, which is exactly ``digest run``: fetch, then send what
is due. This module decides *when*; everything else is the pipeline's.

Restarts and missed runs
    The job's next run time lives in the job store, so a run that fell due
    while the process was down is found on start-up. Job defaults are
    ``coalesce=True`` (however many runs were missed, only the latest one
    runs), ``misfire_grace_time`` 12 hours (a run more than that late is
    skipped and the job waits for the next slot) and ``max_instances=1``.
    APScheduler's own ``add_job(..., replace_existing=True)`` would
    recompute the next run time from *now* and so silently drop a missed
    run; :func:`build_scheduler` therefore looks at the stored job first and
    keeps its next run time while the trigger is unchanged. A changed
    schedule or time zone replaces the job and starts counting from now.

Daylight saving time
    Fire times are wall-clock times in the configured zone, so ``mon 08:00``
    in Europe/Berlin fires once a week at 08:00 local, at 07:00 UTC in winter
    and 06:00 UTC in summer. For a time in the hour a zone skips or repeats
    (say Europe/Berlin ``sun 02:30``):

    * skipped (2026-03-29, clocks jump from 02:00 to 03:00): the run happens
      once, at 01:30 UTC, i.e. 03:30 CEST (APScheduler reads the missing
      wall time with the winter offset);
    * repeated (2026-10-25, 02:00-03:00 happens twice): the run happens
      once, at the first 02:30 (CEST). Plain ``CronTrigger`` in APScheduler
      3.11 would fire at the second 02:30 too and then, asked for the time
      after it, answer that same time again, which makes the scheduler spin
      (agronholm/apscheduler#1021); :class:`WeeklyTrigger` skips the second
      occurrence and never answers a time that is not after the previous one.

    The scheduler's own clock is UTC: APScheduler compares ``now`` with
    stored run times, and two datetimes in the same zone compare by wall
    clock, ignoring ``fold``, which is wrong inside a repeated hour.

Start-up and logs
    :func:`run_forever` checks the config for sending (``config.check_sending``)
    and that a secret is set before it starts, so a wrong setting is one line
    and exit 2 at start-up rather than a failed run next Monday. It then logs
    at INFO: ``scheduler started; next run at ...``, each run's result
    (``scheduled run finished (exit code N): ...``), ``next run at ...``
    after each run, and ``scheduler stopped``.

Stopping
    ``BlockingScheduler`` installs no signal handlers itself.
    :func:`run_until_signal` turns SIGTERM and SIGINT into
    ``scheduler.shutdown(wait=True)``: a run in progress finishes, then the
    process returns normally.
"""

from __future__ import annotations

import logging
import pickle
import signal
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    SchedulerEvent,
)
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import SQLAlchemyError

from digest.config import Config, check_sending, load_config
from digest.configcheck import SCHEDULE_RE, redact
from digest.errors import ConfigError, DigestError, StoreError

if TYPE_CHECKING:
    from digest.pipeline import RunReport

log = logging.getLogger(__name__)

JOB_ID = "digest-weekly"
JOB_TABLE = "apscheduler_jobs"
DEFAULT_JOB = "digest.schedule:scheduled_run"
DEFAULT_MISFIRE_GRACE = timedelta(hours=12)
# A job-store write that meets a pipeline write on the same SQLite file waits
# rather than failing the scheduler loop.
SQLITE_BUSY_TIMEOUT_S = 30.0

#: Set by the first SIGTERM/SIGINT: a scheduled run in progress finishes the messages in flight and stops.
STOPPING = threading.Event()


def scheduled_run(config_path: str) -> None:
    """The scheduled job: ``digest run`` once, with the config re-read from ``config_path``.

    Referenced textually (``"digest.schedule:scheduled_run"``) so the job
    store can persist it. A ``DigestError`` is logged on one line; anything
    else is a bug and reaches APScheduler, which logs it with its traceback.
    """
    from digest import pipeline  # the orchestrator is heavy; only the job needs it

    log.info("scheduled run started")
    try:
        config = load_config(Path(config_path))
        for warning in check_sending(config):
            log.warning("%s", warning)
        with pipeline.open_store(config) as store:
            report = pipeline.run(config, store, clock=lambda: datetime.now(UTC), wait=True, interrupt=STOPPING)
    except DigestError as err:
        log.error("scheduled run failed: %s", err)
        return
    level = logging.INFO if report.exit_code == 0 else logging.WARNING
    log.log(level, "scheduled run finished (exit code %d): %s", report.exit_code, run_summary(report))
    for problem in report.problems:
        log.warning("%s", problem)


def run_summary(report: RunReport) -> str:
    """One line on what a ``pipeline.RunReport`` did: the fetch, then each issue's send."""
    failed = sum(1 for line in report.fetched if line.result.status in ("failed", "broken"))
    new = sum(line.counts.new for line in report.fetched)
    parts = [f"fetched {len(report.fetched)} sources ({new} new entries, {failed} failed)"]
    for summary in [*report.resumed, *([report.sent] if report.sent is not None else [])]:
        r = summary.report
        parts.append(
            f"issue {summary.issue_key}: {r.sent} sent, {r.failed_permanent} failed permanently, "
            f"{r.failed_temporary} to retry, {r.unknown} unknown"
        )
    if report.skipped:
        parts.append(f"nothing sent: {report.skipped}")
    parts.extend(report.waiting)
    return "; ".join(parts)


class WeeklyTrigger(CronTrigger):  # type: ignore[misc]
    """A ``CronTrigger`` that fires once per wall-clock slot and always moves forward.

    Differs from its base only around a repeated hour (see the module
    docstring): the second occurrence of a wall time is skipped, and a fire
    time not after ``previous_fire_time`` is never returned.
    """

    __slots__ = ()

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        fire: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        floor = previous_fire_time.astimezone(UTC) if previous_fire_time is not None else None
        while fire is not None and (_is_repeat(fire) or (floor is not None and fire.astimezone(UTC) <= floor)):
            # Without a previous time the base class searches forward from `now` alone.
            fire = super().get_next_fire_time(None, fire.astimezone(UTC) + timedelta(seconds=1))
        return fire


def _is_repeat(moment: datetime) -> bool:
    """True for the second occurrence of a wall time in an hour the zone repeats."""
    if moment.fold == 0:
        return False
    first, second = moment.replace(fold=0).utcoffset(), moment.utcoffset()
    # Clocks going back leave the earlier reading with the larger offset; in a skipped hour it is smaller.
    return first is not None and second is not None and first > second


def cron_trigger(schedule: str, timezone: str) -> CronTrigger:
    """``"mon 08:00"`` in ``"Europe/Berlin"`` → a weekly trigger at that wall-clock time.

    Raises ``ConfigError`` for a schedule not of the form ``"ddd HH:MM"``
    (``mon``..``sun``, 24-hour clock) or an unknown time zone.
    """
    m = SCHEDULE_RE.match(schedule.strip().lower())
    if m is None:
        raise ConfigError(f"schedule must look like 'mon 08:00' (day, then 24-hour time), got {schedule!r}")
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {timezone!r}") from exc
    return WeeklyTrigger(day_of_week=m.group(1), hour=int(m.group(2)), minute=int(m.group(3)), timezone=tz)


def build_scheduler(
    config: Config,
    *,
    job: str = DEFAULT_JOB,
    job_args: Sequence[object] | None = None,
    misfire_grace: timedelta = DEFAULT_MISFIRE_GRACE,
    scheduler_cls: type = BlockingScheduler,
) -> BaseScheduler:
    """A not-yet-started scheduler holding the ``digest-weekly`` job in the database's job store.

    ``job`` is a ``"module:function"`` reference called with ``job_args``
    (default ``[str(config.path)]``). If the store already holds the job
    with the same trigger, its stored next run time is kept, so a run missed
    while no scheduler was running happens once when this one starts.
    Function, arguments and defaults always come from this call.
    """
    trigger = cron_trigger(config.digest.schedule, config.digest.timezone)
    url = config.digest.database
    args = [str(config.path)] if job_args is None else list(job_args)
    scheduler: BaseScheduler = scheduler_cls(
        jobstores={"default": _job_store(url)},
        job_defaults={
            "coalesce": True,
            "misfire_grace_time": int(misfire_grace.total_seconds()),
            "max_instances": 1,
        },
        timezone=UTC,
    )
    kept = _stored_next_run(scheduler, url, trigger)
    # Passing next_run_time stops APScheduler from recomputing it from now at start().
    extra: dict[str, Any] = {} if kept is None else {"next_run_time": kept}
    scheduler.add_job(job, trigger, args=args, id=JOB_ID, name="digest weekly run", replace_existing=True, **extra)
    return scheduler


def run_until_signal(scheduler: BlockingScheduler) -> None:
    """Start ``scheduler`` (blocks) until SIGTERM or SIGINT, then shut it down cleanly.

    Must be called from the main thread. The signal handler does not shut
    the scheduler down itself: it may interrupt the scheduler loop while
    that holds the job-store lock, so a helper thread calls
    ``shutdown(wait=True)``, which takes the locks in turn and lets a
    running job finish. The previous handlers are restored afterwards.
    """
    STOPPING.clear()
    stopper = _Stopper(scheduler)
    scheduler.add_listener(stopper.started, EVENT_SCHEDULER_STARTED)
    scheduler.add_listener(stopper.ran, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    previous = {sig: signal.signal(sig, stopper.request) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        scheduler.start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stopper.join()
    log.info("scheduler stopped")


def run_forever(config_path: Path) -> None:
    """``digest schedule``: load and check the config, then run the weekly job until SIGTERM/SIGINT.

    Raises ``ConfigError`` before starting when the config cannot send
    (see ``config.check_sending``) or no secret is set.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(config_path)
    check_start_up(config)
    scheduler = build_scheduler(config, scheduler_cls=BlockingScheduler)
    assert isinstance(scheduler, BlockingScheduler)
    run_until_signal(scheduler)


def check_start_up(config: Config) -> None:
    """What a scheduled run would refuse, refused now: a config that cannot send, a missing secret, a bad database.

    Opening the store also applies its migrations before the job store
    holds the file: on a new SQLite database, the first run's migration
    (and the switch to WAL) would otherwise wait for the scheduler's own
    connection and fail as "locked".
    """
    from digest.pipeline import open_store, secret  # the orchestrator is heavy; only start-up needs it

    for warning in check_sending(config):
        log.warning("%s", warning)
    secret(config, strict=True)
    cron_trigger(config.digest.schedule, config.digest.timezone)
    open_store(config).close()


def _job_store(url: str) -> SQLAlchemyJobStore:
    options: dict[str, Any] = {}
    if url.startswith("sqlite"):
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    try:
        return SQLAlchemyJobStore(url=url, tablename=JOB_TABLE, engine_options=options)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open the job store in {redact(url)!r}: {exc}") from exc


def _stored_next_run(scheduler: BaseScheduler, url: str, trigger: CronTrigger) -> datetime | None:
    """The stored job's next run time if its trigger equals ``trigger``, else ``None``."""
    # A separate store instance: the scheduler's own one must first be started by start().
    probe = _job_store(url)
    try:
        probe.start(scheduler, "default")
        stored = probe.lookup_job(JOB_ID)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the job store in {redact(url)!r}: {exc}") from exc
    except (LookupError, ImportError, pickle.UnpicklingError) as exc:
        # e.g. a job saved by an older version whose function moved; start afresh.
        log.warning("stored job %s cannot be loaded (%s); replacing it", JOB_ID, exc)
        return None
    finally:
        probe.shutdown()
    if stored is None:
        return None
    if repr(stored.trigger) != repr(trigger):
        log.info("schedule changed from %r to %r; next run counted from now", stored.trigger, trigger)
        return None
    next_run: datetime | None = stored.next_run_time
    return next_run


def _local(when: datetime, trigger: CronTrigger) -> str:
    """``when`` in the schedule's own zone, ISO 8601 with its offset."""
    return when.astimezone(trigger.timezone).isoformat()


class _Stopper:
    """Turns the first SIGTERM/SIGINT into one ``shutdown(wait=True)`` off the main thread."""

    def __init__(self, scheduler: BaseScheduler) -> None:
        self._scheduler = scheduler
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self._trigger: CronTrigger | None = None

    def started(self, event: SchedulerEvent) -> None:
        self._running.set()
        job = self._scheduler.get_job(JOB_ID)
        if job is not None:
            self._trigger = job.trigger
            log.info("scheduler started; next run at %s", _local(job.next_run_time, job.trigger))

    def ran(self, event: SchedulerEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("a run due at %s was missed (more than the grace time late)", event.scheduled_run_time)
        # From the trigger, not get_job(): shutdown(wait=True) holds the job-store lock while a
        # finishing job sends this event, so asking the store here would deadlock.
        if self._thread is None and self._trigger is not None and event.job_id == JOB_ID:
            upcoming = self._trigger.get_next_fire_time(None, datetime.now(UTC))
            if upcoming is not None:
                log.info("next run at %s", _local(upcoming, self._trigger))

    def request(self, signum: int, frame: FrameType | None) -> None:
        if self._thread is not None:
            log.info("%s: already stopping", signal.Signals(signum).name)
            return
        log.info("%s: stopping; a send in progress finishes the messages in flight", signal.Signals(signum).name)
        STOPPING.set()
        # Daemon: if start() itself fails, this thread must not keep the process alive.
        self._thread = threading.Thread(target=self._stop, name="digest-schedule-stop", daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        # A signal that arrives before start() finished waits for it, then stops it.
        self._running.wait()
        self._scheduler.shutdown(wait=True)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
