"""The scheduler: cron trigger in the zone, the job store in the database, missed runs, signals."""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.job import Job
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler

from digest.config import Config, load_config
from digest.errors import ConfigError
from digest.schedule import JOB_ID, build_scheduler, cron_trigger, scheduled_run
from tests.data.schedule.jobs import append_line

ROOT = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
APPEND = "tests.data.schedule.jobs:append_line"


def write_config(tmp_path: Path, schedule: str, timezone: str = "Europe/Berlin") -> Config:
    path = tmp_path / "digest.toml"
    path.write_text(
        textwrap.dedent(f"""\
            [digest]
            timezone = "{timezone}"
            schedule = "{schedule}"
            database = "sqlite:///digest.db"

            [sender]
            transport = "maildir"
            """),
        encoding="utf-8",
    )
    return load_config(path)


def schedule_at(moment: datetime) -> str:
    """The ``"ddd HH:MM"`` schedule whose weekly slot is ``moment`` (to the minute)."""
    return f"{DAYS[moment.weekday()]} {moment:%H:%M}"


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def stored_job(config: Config) -> Job | None:
    store = SQLAlchemyJobStore(url=config.digest.database, tablename="apscheduler_jobs")
    store.start(BackgroundScheduler(), "default")
    try:
        job: Job | None = store.lookup_job(JOB_ID)
        return job
    finally:
        store.shutdown()


def persist_with_next_run(config: Config, next_run: datetime, job_args: list[object]) -> None:
    """Store the job as a scheduler that last ran long ago would have left it.

    The next run time is rewritten in the table (column and pickled state)
    rather than through a running scheduler, whose loop could pick the job
    up between ``modify_job`` and ``shutdown``.
    """
    scheduler = build_scheduler(config, job=APPEND, job_args=job_args, scheduler_cls=BackgroundScheduler)
    scheduler.start(paused=True)
    scheduler.shutdown(wait=True)
    db = config.digest.database.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        (blob,) = conn.execute("SELECT job_state FROM apscheduler_jobs WHERE id = ?", (JOB_ID,)).fetchone()
        state = pickle.loads(blob)
        state["next_run_time"] = next_run
        conn.execute(
            "UPDATE apscheduler_jobs SET next_run_time = ?, job_state = ? WHERE id = ?",
            (next_run.timestamp(), pickle.dumps(state), JOB_ID),
        )
    job = stored_job(config)
    assert job is not None
    assert job.next_run_time == next_run


def start_and_settle(scheduler: BaseScheduler, tmp_path: Path) -> None:
    """Start, let the scheduler look at its due jobs once, then shut down after running ones finish.

    A probe job, due now in a memory store, is processed in the same pass as
    the digest job; once it has run, that pass is over.
    """
    probe = tmp_path / f"probe-{time.monotonic_ns()}"
    scheduler.add_jobstore(MemoryJobStore(), "probe")
    # Recurring, so the pass updates it rather than removing it: remove_job() raises in the
    # scheduler thread when shutdown() has already marked the scheduler stopped.
    scheduler.add_job(
        append_line, "interval", weeks=1, next_run_time=datetime.now(UTC), args=[str(probe)], jobstore="probe"
    )
    scheduler.start()
    try:
        assert wait_for(probe.exists), "the scheduler never processed its due jobs"
    finally:
        scheduler.shutdown(wait=True)


# --- the trigger ----------------------------------------------------------------------------


def test_cron_trigger_is_weekly_at_the_local_time() -> None:
    trigger = cron_trigger("mon 08:00", "Europe/Berlin")
    assert trigger.timezone == BERLIN
    fields = {f.name: str(f) for f in trigger.fields if not f.is_default}
    assert fields == {"day_of_week": "mon", "hour": "8", "minute": "0"}
    assert cron_trigger("Sun  23:59", "UTC").get_next_fire_time(None, datetime(2026, 1, 1, tzinfo=UTC)) == (
        datetime(2026, 1, 4, 23, 59, tzinfo=ZoneInfo("UTC"))
    )


@pytest.mark.parametrize(
    ("schedule", "timezone"),
    [("monday 08:00", "UTC"), ("mon 8:00", "UTC"), ("mon 24:00", "UTC"), ("mon 08:00", "Mars/Olympus")],
)
def test_cron_trigger_rejects_bad_input(schedule: str, timezone: str) -> None:
    with pytest.raises(ConfigError):
        cron_trigger(schedule, timezone)


@pytest.mark.parametrize(
    ("start", "offsets"),
    [
        (datetime(2026, 3, 20, tzinfo=BERLIN), (timedelta(hours=1), timedelta(hours=2), timedelta(hours=2))),
        (datetime(2026, 10, 17, tzinfo=BERLIN), (timedelta(hours=2), timedelta(hours=1), timedelta(hours=1))),
    ],
    ids=["spring-forward-2026-03-29", "fall-back-2026-10-25"],
)
def test_dst_weeks_fire_once_at_eight_local(start: datetime, offsets: tuple[timedelta, ...]) -> None:
    trigger = cron_trigger("mon 08:00", "Europe/Berlin")
    fires: list[datetime] = []
    previous = None
    now = start
    for _ in range(3):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire)
        previous = now = fire
    local = [f.astimezone(BERLIN) for f in fires]
    utc = [f.astimezone(UTC) for f in fires]
    assert [(f.weekday(), f.hour, f.minute) for f in local] == [(0, 8, 0)] * 3
    assert [f.date() - local[0].date() for f in local] == [timedelta(days=d) for d in (0, 7, 14)]
    assert tuple(f.utcoffset() for f in local) == offsets
    # Across the change the week is an hour shorter or longer in real time; never two fires in it.
    assert {utc[1] - utc[0], utc[2] - utc[1]} == {
        timedelta(days=7),
        timedelta(days=7) + offsets[0] - offsets[1],
    }


def test_time_in_the_skipped_hour_runs_once_an_hour_later() -> None:
    trigger = cron_trigger("sun 02:30", "Europe/Berlin")
    fire = trigger.get_next_fire_time(None, datetime(2026, 3, 28, 12, tzinfo=BERLIN))
    assert fire is not None
    # 02:30 does not exist on 2026-03-29: it is read with the winter offset, i.e. 03:30 CEST.
    assert fire.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert fire.astimezone(UTC).astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 3, 29, 3, 30)
    after = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    assert after == datetime(2026, 4, 5, 2, 30, tzinfo=BERLIN)


def test_time_in_the_repeated_hour_fires_once_at_the_first() -> None:
    trigger = cron_trigger("sun 02:30", "Europe/Berlin")
    first = trigger.get_next_fire_time(None, datetime(2026, 10, 24, 12, tzinfo=BERLIN))
    assert first is not None
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    for now in (first + timedelta(seconds=1), datetime(2026, 10, 25, 1, 45, tzinfo=UTC)):
        after = trigger.get_next_fire_time(first, now)
        assert after is not None
        assert after.astimezone(UTC) == datetime(2026, 11, 1, 1, 30, tzinfo=UTC)
    # Started between the two 02:30s: the slot has passed, the repeat is not a second slot.
    fresh = trigger.get_next_fire_time(None, datetime(2026, 10, 25, 0, 45, tzinfo=UTC))
    assert fresh is not None
    assert fresh.astimezone(UTC) == datetime(2026, 11, 1, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize("hhmm", ["02:00", "02:30", "02:59", "03:00", "08:00"])
def test_a_year_of_fire_times_is_one_a_week_and_always_forward(hhmm: str) -> None:
    trigger = cron_trigger(f"sun {hhmm}", "Europe/Berlin")
    fires: list[datetime] = []
    previous = None
    now = datetime(2026, 1, 1, tzinfo=UTC)
    while now < datetime(2027, 1, 1, tzinfo=UTC):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire.astimezone(UTC))
        previous, now = fire, fire.astimezone(UTC) + timedelta(seconds=1)
        assert len(fires) < 60
    assert len({f.astimezone(BERLIN).date() for f in fires}) == len(fires) == 53
    assert all(later > earlier for earlier, later in itertools.pairwise(fires))
    # A scheduler catching up after a long outage walks the same chain; it must end.
    catch_up = fires[0]
    steps = 0
    while catch_up <= fires[-1]:
        nxt = trigger.get_next_fire_time(catch_up, fires[-1])
        assert nxt is not None
        catch_up, steps = nxt.astimezone(UTC), steps + 1
        assert steps <= len(fires)


# --- the scheduler and its job store --------------------------------------------------------


def test_build_scheduler_keeps_the_job_in_the_database(tmp_path: Path) -> None:
    config = write_config(tmp_path, "tue 09:15", "Asia/Shanghai")
    scheduler = build_scheduler(config, scheduler_cls=BackgroundScheduler)
    scheduler.start(paused=True)
    try:
        job = scheduler.get_job(JOB_ID)
        assert job is not None
        assert job.func_ref == "digest.schedule:scheduled_run"
        assert job.args == (str(config.path),)
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 12 * 3600)
        assert repr(job.trigger) == repr(cron_trigger("tue 09:15", "Asia/Shanghai"))
        assert job.next_run_time > datetime.now(UTC)
        assert job.next_run_time.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%a %H:%M") == "Tue 09:15"
        # Only `now` is read in the scheduler's zone; UTC keeps comparisons exact in repeated hours.
        assert scheduler.timezone == UTC
    finally:
        scheduler.shutdown(wait=False)
    db = tmp_path / "digest.db"
    assert config.digest.database == f"sqlite:///{db}"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, next_run_time FROM apscheduler_jobs").fetchall()
    assert [r[0] for r in rows] == [JOB_ID]
    assert rows[0][1] == pytest.approx(job.next_run_time.timestamp())


def test_a_new_job_waits_for_its_first_slot(tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    config = write_config(tmp_path, schedule_at(datetime.now(BERLIN) - timedelta(minutes=2)))
    scheduler = build_scheduler(config, job=APPEND, job_args=[str(out)], scheduler_cls=BackgroundScheduler)
    start_and_settle(scheduler, tmp_path)
    assert lines(out) == []
    job = stored_job(config)
    assert job is not None
    assert timedelta(days=6) < job.next_run_time - datetime.now(UTC) < timedelta(days=7, hours=1)


@pytest.mark.parametrize("grace", [timedelta(hours=12), timedelta(weeks=4)], ids=["default-grace", "long-grace"])
def test_missed_runs_happen_once_on_start_up(tmp_path: Path, grace: timedelta) -> None:
    out = tmp_path / "runs.txt"
    slot = datetime.now(BERLIN) - timedelta(minutes=2)
    config = write_config(tmp_path, schedule_at(slot))
    # Down for three weeks: four slots passed, the last one two minutes ago.
    persist_with_next_run(config, datetime.now(UTC) - timedelta(weeks=3), [str(out)])
    assert lines(out) == []

    def build() -> BaseScheduler:
        return build_scheduler(
            config, job=APPEND, job_args=[str(out)], misfire_grace=grace, scheduler_cls=BackgroundScheduler
        )

    start_and_settle(build(), tmp_path)
    assert lines(out) == ["ran"]
    job = stored_job(config)
    assert job is not None
    assert job.next_run_time > datetime.now(UTC)

    start_and_settle(build(), tmp_path)
    assert lines(out) == ["ran"]


def test_a_run_missed_by_more_than_the_grace_time_is_skipped(tmp_path: Path) -> None:
    out = tmp_path / "runs.txt"
    config = write_config(tmp_path, schedule_at(datetime.now(BERLIN) - timedelta(days=1, minutes=2)))
    persist_with_next_run(config, datetime.now(UTC) - timedelta(weeks=3), [str(out)])
    scheduler = build_scheduler(config, job=APPEND, job_args=[str(out)], scheduler_cls=BackgroundScheduler)
    start_and_settle(scheduler, tmp_path)
    assert lines(out) == []
    job = stored_job(config)
    assert job is not None
    assert timedelta(days=5) < job.next_run_time - datetime.now(UTC) < timedelta(days=6, hours=1)


@pytest.mark.parametrize(
    ("new_day_offset", "new_timezone"),
    [(3, "Europe/Berlin"), (0, "America/New_York")],
    ids=["schedule-changed", "timezone-changed"],
)
def test_a_changed_schedule_replaces_the_job(tmp_path: Path, new_day_offset: int, new_timezone: str) -> None:
    out = tmp_path / "runs.txt"
    slot = datetime.now(BERLIN) - timedelta(minutes=2)
    old = write_config(tmp_path, schedule_at(slot))
    persist_with_next_run(old, datetime.now(UTC) - timedelta(weeks=3), [str(out)])

    new_schedule = schedule_at(slot + timedelta(days=new_day_offset))
    config = write_config(tmp_path, new_schedule, new_timezone)
    scheduler = build_scheduler(config, job=APPEND, job_args=[str(out)], scheduler_cls=BackgroundScheduler)
    start_and_settle(scheduler, tmp_path)

    # The old slot's missed run belongs to a schedule that no longer exists.
    assert lines(out) == []
    job = stored_job(config)
    assert job is not None
    trigger = cron_trigger(new_schedule, new_timezone)
    assert repr(job.trigger) == repr(trigger)
    expected = trigger.get_next_fire_time(None, datetime.now(UTC))
    assert job.next_run_time == expected


def test_changed_job_arguments_keep_the_missed_run(tmp_path: Path) -> None:
    old_out, new_out = tmp_path / "old.txt", tmp_path / "new.txt"
    config = write_config(tmp_path, schedule_at(datetime.now(BERLIN) - timedelta(minutes=2)))
    persist_with_next_run(config, datetime.now(UTC) - timedelta(weeks=1), [str(old_out)])
    scheduler = build_scheduler(config, job=APPEND, job_args=[str(new_out)], scheduler_cls=BackgroundScheduler)
    start_and_settle(scheduler, tmp_path)
    assert (lines(old_out), lines(new_out)) == ([], ["ran"])


# --- the job function -----------------------------------------------------------------------


def test_scheduled_run_logs_a_config_error_instead_of_raising(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "nowhere.toml"
    with caplog.at_level(logging.ERROR, logger="digest.schedule"):
        scheduled_run(str(missing))
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "scheduled run failed" in caplog.text
    assert str(missing) in caplog.text


def test_scheduled_run_runs_the_pipeline_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SECRET", "a-test-secret")  # sending refuses to run without one
    config = write_config(tmp_path, "mon 08:00")
    with caplog.at_level(logging.INFO, logger="digest.schedule"):
        scheduled_run(str(config.path))
    # No sources and no subscribers: a clean run that finds nothing to send.
    assert "scheduled run finished (exit code 0)" in caplog.text
    assert (tmp_path / "digest.db").exists()


# --- the blocking process and its signals ---------------------------------------------------

PROCESS = textwrap.dedent("""\
    import sys
    from pathlib import Path
    from apscheduler.events import EVENT_SCHEDULER_STARTED
    from digest.config import load_config
    from digest.schedule import build_scheduler, run_until_signal

    config_path, out, ready = sys.argv[1:4]
    scheduler = build_scheduler(
        load_config(Path(config_path)), job="tests.data.schedule.jobs:slow_run", job_args=[out, 1.5]
    )
    scheduler.add_listener(lambda event: Path(ready).write_text("ready"), EVENT_SCHEDULER_STARTED)
    run_until_signal(scheduler)
    print("returned")
    """)


def spawn(config: Config, out: Path, ready: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PROCESS, str(config.path), str(out), str(ready)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    proc.send_signal(signum)
    try:
        return proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_blocking_scheduler_cleanly(tmp_path: Path, signum: int) -> None:
    out, ready = tmp_path / "runs.txt", tmp_path / "ready"
    config = write_config(tmp_path, "mon 08:00")
    proc = spawn(config, out, ready)
    try:
        assert wait_for(ready.exists, timeout=20), proc.stderr.read() if proc.poll() is not None else ""
    finally:
        stdout, stderr = stop(proc, signum)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == "returned"
    assert "Traceback" not in stderr
    assert lines(out) == []


def test_sigterm_lets_the_running_job_finish(tmp_path: Path) -> None:
    out, ready = tmp_path / "runs.txt", tmp_path / "ready"
    config = write_config(tmp_path, schedule_at(datetime.now(BERLIN) - timedelta(minutes=2)))
    persist_with_next_run(config, datetime.now(UTC) - timedelta(weeks=2), [str(out), 1.5])
    proc = spawn(config, out, ready)
    try:
        # The missed run starts as soon as the blocking scheduler does.
        assert wait_for(lambda: lines(out) == ["start"], timeout=20)
    finally:
        stdout, stderr = stop(proc, signal.SIGTERM)
    assert proc.returncode == 0, stderr
    assert stdout.strip() == "returned"
    assert lines(out) == ["start", "end"]
    job = stored_job(config)
    assert job is not None
    assert job.next_run_time > datetime.now(UTC)


def test_run_forever_starts_from_the_config_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path, "mon 08:00")
    log_path = tmp_path / "schedule.log"
    code = (
        "import sys; from pathlib import Path; from digest.schedule import run_forever; run_forever(Path(sys.argv[1]))"
    )
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(config.path)],
            cwd=ROOT,
            stdout=log_file,
            stderr=log_file,
            text=True,
            env={**os.environ, "DIGEST_SECRET": "a-test-secret"},
        )
        try:
            started = wait_for(lambda: "scheduler started; next run at" in log_path.read_text(), timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
    output = log_path.read_text()
    assert started, output
    assert proc.returncode == 0, output
    assert "SIGTERM: stopping" in output
    assert "scheduler stopped" in output
    job = stored_job(config)
    assert job is not None
    assert job.func_ref == "digest.schedule:scheduled_run"
    assert job.args == (str(config.path),)


# --- `digest schedule`: start-up checks and its log ------------------------------------------

#: A log line of `digest schedule`: ISO 8601 UTC timestamp, level, logger, message.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) ([\w.]+): (.*)$")


def digest_schedule(config_path: Path, *flags: str, secret: str | None = "a-test-secret") -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    if secret is not None:
        env["DIGEST_SECRET"] = secret
    return subprocess.Popen(
        [sys.executable, "-m", "digest", *flags, "--config", str(config_path), "schedule"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def test_schedule_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    config = write_config(tmp_path, "mon 08:00")
    proc = digest_schedule(config.path, secret=None)
    stdout, stderr = finish(proc)
    assert proc.returncode == 2, stderr
    assert stdout == ""
    assert stderr.strip().splitlines() == [
        f"error: {config.path}: digest.secret: not set, so unsubscribe links could be forged; "
        "set DIGEST_SECRET (or digest.secret) to a long random string"
    ]
    assert not (tmp_path / "digest.db").exists()  # refused before the job store was opened


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[digest]\nshedule = 'mon 08:00'\n", "digest.shedule: unknown key (did you mean 'schedule'?)"),
        ("[fetch]\ndeadline = nan\n", "fetch.deadline: must be a finite number, got nan"),
    ],
)
def test_schedule_refuses_to_start_with_a_bad_config(tmp_path: Path, extra: str, message: str) -> None:
    path = tmp_path / "digest.toml"
    path.write_text('[sender]\ntransport = "maildir"\n' + extra, encoding="utf-8")
    proc = digest_schedule(path)
    _, stderr = finish(proc)
    assert proc.returncode == 2, stderr
    assert stderr.strip().splitlines() == [f"error: {path}: {message}"]


def test_schedule_refuses_an_unusable_database_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the database folder should be")
    path = tmp_path / "digest.toml"
    path.write_text('[digest]\ndatabase = "sqlite:///state/digest.db"\n[sender]\ntransport = "maildir"\n')
    proc = digest_schedule(path)
    _, stderr = finish(proc)
    assert proc.returncode == 2, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: digest.database: cannot create the folder of database ")


def test_schedule_refuses_a_config_without_sender(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text('[digest]\nschedule = "mon 08:00"\n', encoding="utf-8")
    proc = digest_schedule(path)
    _, stderr = finish(proc)
    assert proc.returncode == 2, stderr
    assert stderr.strip().splitlines() == [
        f"error: {path}: sender: no [sender] table, so nothing can be sent (is the file cut short?); "
        'add [sender] with transport = "maildir" or "smtp"'
    ]


def read_log(stderr: str) -> list[tuple[str, str, str]]:
    """(level, logger, message) of every line, each asserted to carry a timestamp."""
    out = []
    for line in stderr.splitlines():
        m = LOG_LINE.match(line)
        assert m, line
        out.append((m.group(1), m.group(2), m.group(3)))
    return out


def job_row_exists(config: Config) -> bool:
    db = Path(config.digest.database.removeprefix("sqlite:///"))
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db) as conn:
            return bool(conn.execute("SELECT count(*) FROM apscheduler_jobs").fetchone()[0])
    except sqlite3.Error:
        return False


def test_schedule_logs_started_next_run_and_stopped_with_timestamps(tmp_path: Path) -> None:
    # Three days away: the schedule never fires while the test runs.
    slot = datetime.now(BERLIN) + timedelta(days=3)
    config = write_config(tmp_path, schedule_at(slot))
    proc = digest_schedule(config.path)
    try:
        assert wait_for(lambda: job_row_exists(config), timeout=20)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
    _, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    log = read_log(stderr)
    expected_next = cron_trigger(schedule_at(slot), "Europe/Berlin").get_next_fire_time(None, datetime.now(UTC))
    assert expected_next is not None
    assert log == [
        ("INFO", "digest.pipeline.gather", f"opened database sqlite:///{tmp_path / 'digest.db'}"),
        ("INFO", "digest.schedule", f"scheduler started; next run at {expected_next.isoformat()}"),
        ("INFO", "digest.schedule", "SIGTERM: stopping; a send in progress finishes the messages in flight"),
        ("INFO", "digest.schedule", "scheduler stopped"),
    ]


def test_schedule_logs_each_runs_result(tmp_path: Path) -> None:
    out = tmp_path / "unused.txt"
    slot = datetime.now(BERLIN) - timedelta(minutes=2)
    config = write_config(tmp_path, schedule_at(slot))
    # A run missed while no scheduler ran: it happens once at start-up, as `digest run`. The store
    # was never opened: its first migration must not wait on the job store's hold of the file.
    persist_with_next_run(config, datetime.now(UTC) - timedelta(weeks=1), [str(out)])
    proc = digest_schedule(config.path)
    try:
        assert wait_for(lambda: not job_row_exists(config) or stored_next_run_is_future(config), timeout=30)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
    _, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    messages = [m for _, logger, m in read_log(stderr) if logger == "digest.schedule"]
    assert messages[0].startswith("scheduler started; next run at ")
    assert "scheduled run started" in messages
    finished = [m for m in messages if m.startswith("scheduled run finished")]
    assert len(finished) == 1, messages
    # No sources and no subscribers: a clean run; the week's issue has too few entries to go out.
    assert finished[0].startswith("scheduled run finished (exit code 0): fetched 0 sources (0 new entries, 0 failed)")
    nexts = [m for m in messages[1:] if m.startswith("next run at ")]
    assert len(nexts) == 1
    assert messages[-1] == "scheduler stopped"


def stored_next_run_is_future(config: Config) -> bool:
    job = stored_job(config)
    return job is not None and job.next_run_time > datetime.now(UTC)


def test_schedule_quiet_logs_nothing_but_errors(tmp_path: Path) -> None:
    config = write_config(tmp_path, schedule_at(datetime.now(BERLIN) + timedelta(days=3)))
    proc = digest_schedule(config.path, "-q")
    try:
        assert wait_for(lambda: job_row_exists(config), timeout=20)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
    stdout, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    assert (stdout, stderr) == ("", "")


def test_schedule_verbose_adds_debug_logs(tmp_path: Path) -> None:
    config = write_config(tmp_path, schedule_at(datetime.now(BERLIN) + timedelta(days=3)))
    proc = digest_schedule(config.path, "-v")
    try:
        assert wait_for(lambda: job_row_exists(config), timeout=20)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
    _, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    log = read_log(stderr)
    assert ("DEBUG", "digest.config", f"loaded {config.path}: 0 source(s), 0 theme(s)") in log
    assert log[-1] == ("INFO", "digest.schedule", "scheduler stopped")
