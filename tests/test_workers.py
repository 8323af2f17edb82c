"""``digest worker`` processes over PostgreSQL: batches, kills, races, periodic plans, relays.

Workers are real subprocesses; mail goes to the aiosmtpd server of
``tests/fixtures/smtp_server.py`` on loopback. The list is 4,000 addresses
in batches of 100 (the issue's 20,000 in 500s, scaled down to keep the
suite quick); ``stalled_after`` is 3 seconds.
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from digest import pipeline
from digest.config import load_config
from digest.errors import ConfigError, SendError
from digest.models import Delivery, IsoWeek
from digest.store import DeliveryRow
from tests.data.send import workers as wk
from tests.data.send import workspace as ws
from tests.fixtures.sink_process import Sink

pytestmark = pytest.mark.postgres

N = 4000
BATCH = 100
PG_HEAD = '[digest]\ndatabase = "postgresql+psycopg://u@127.0.0.1/d"\n'


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., wk.Worker]]:
    """``start_worker(config, name, *args)``: a worker process, stopped at the end of the test."""
    started: list[wk.Worker] = []

    def start(config: Path, name: str, *args: str) -> wk.Worker:
        worker = wk.Worker(config, tmp_path, name, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    """The SMTP sink in its own process."""
    started = Sink(tmp_path / "sink.log")
    yield started
    started.close()


def duplicates(sink: Sink) -> int:
    """Messages taken more than once (by Message-ID)."""
    ids = Counter(msgid for _, msgid in sink.received())
    return sum(n - 1 for n in ids.values())


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_workers_need_postgresql_and_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pg = PG_HEAD + '[sender]\ntransport = "smtp"\n[workers]\nenabled = true\n'
    good = load_config(_config(tmp_path, pg + "batch_size = 500\nstalled_after = 3\n"), env={})
    assert (good.workers.enabled, good.workers.batch_size, good.workers.stalled_after) == (True, 500, 3.0)
    assert load_config(_config(tmp_path, "[workers]\nbatch_size = 10\n"), env={}).workers.enabled is False

    with pytest.raises(ConfigError, match=r"workers\.enabled: the workers send over SMTP"):
        load_config(_config(tmp_path, pg.replace('transport = "smtp"', 'transport = "maildir"')), env={})
    with pytest.raises(ConfigError, match=r"workers\.enabled: needs a PostgreSQL database"):
        load_config(_config(tmp_path, '[sender]\ntransport = "smtp"\n[workers]\nenabled = true\n'), env={})
    for bad, where in (
        ("batch_size = 0", "workers.batch_size"),
        ("batch_size = '9'", "workers.batch_size"),
        ("stalled_after = -1", "workers.stalled_after"),
        ("plan_cron = 'every day; rm -rf /'", "workers.plan_cron"),
        ("threads = 4", "workers.threads: unknown key"),
    ):
        with pytest.raises(ConfigError, match=where):
            load_config(_config(tmp_path, pg + bad + "\n"), env={})

    # Without the extra installed, [workers] enabled is one clear line.
    monkeypatch.setitem(sys.modules, "procrastinate", None)
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, pg), env={})
    assert str(err.value).endswith("workers.enabled: needs the workers extra: pip install 'digest[workers]'")
    assert "\n" not in str(err.value)


def test_relays_are_read_and_checked(tmp_path: Path) -> None:
    relay = '[[sender.relays]]\nname = "a"\nport = 2600\nconnections = 3\nrate = 5\n'
    config = load_config(
        _config(tmp_path, relay + '[[sender.relays]]\nname = "b-2"\n'), env={"DIGEST_SMTP_PASSWORD_A": "pa"}
    )
    a, b = config.sender.relays
    assert (a.name, a.port, a.connections, a.rate, a.password) == ("a", 2600, 3, 5.0, "pa")
    assert (b.name, b.port, b.connections, b.password) == ("b-2", 25, 4, "")
    for bad, where in (
        # Counted from 1, as [[sources]] and [[themes]] are.
        ('[[sender.relays]]\nname = "../x"\n', r"sender\.relays\[1\]\.name"),
        (relay + relay, r"sender\.relays\[2\]\.name: 'a' is used"),
        ('[[sender.relays]]\nname = "a"\nconnections = 0\n', r"sender\.relays\[1\]\.connections"),
        ('[[sender.relays]]\nname = "a"\nport = 70000\n', r"sender\.relays\[1\]\.port"),
        ('[[sender.relays]]\nname = "a"\npassword = "x"\n', r"sender\.relays\[1\]\.password: unknown key"),
        ('[sender]\nrelays = "a"\n', r"sender\.relays: must be an array"),
    ):
        with pytest.raises(ConfigError, match=where):
            load_config(_config(tmp_path, bad), env={})


def test_db_migrate_twice_is_a_no_op_the_second_time(tmp_path: Path, pg_fresh_url: str, sink: Sink) -> None:
    path = wk.make_folder(tmp_path, pg_fresh_url, port=sink.port, n=3)
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
    before = wk.sql(pg_fresh_url, tables)
    again = ws.run_cli(path, "db", "migrate")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["store: up to date", "job queue: up to date"]
    assert wk.sql(pg_fresh_url, tables) == before
    assert wk.jobs(pg_fresh_url) == 0
    scheduled = ws.run_cli(path, "schedule")
    assert scheduled.returncode == 2
    assert "with [workers] enabled the workers keep the schedule; run `digest worker`" in scheduled.stderr
    zero = ws.run_cli(path, "worker", "--concurrency", "0")
    assert zero.returncode == 2 and "--concurrency" in zero.stderr
    bad = ws.run_cli(path, "worker", "--queue", "send; DROP TABLE x")
    assert bad.returncode == 2
    assert "--queue: no queue 'send; DROP TABLE x' (queues: periodic, send)" in bad.stderr


def test_db_migrate_on_a_new_database_applies_both(tmp_path: Path, pg_fresh_url: str) -> None:
    path = _config(
        tmp_path, f'[digest]\ndatabase = "{pg_fresh_url}"\n[sender]\ntransport = "smtp"\n[workers]\nenabled = true\n'
    )
    for args in (["worker"], ["status"]):
        early = ws.run_cli(path, *args)
        assert early.returncode == 1
        assert early.stderr.strip() == "error: the job queue has no tables yet: run `digest db migrate`"
    first = ws.run_cli(path, "db", "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("store: ")
    assert first.stdout.splitlines()[-1] == "job queue: schema applied"
    assert wk.jobs(pg_fresh_url) == 0


def test_worker_commands_need_workers_enabled(tmp_path: Path) -> None:
    path = _config(tmp_path, "")
    for args in (["worker"], ["status"], ["reconcile", "--week", "2018-W02"]):
        done = ws.run_cli(path, *args)
        assert done.returncode == 2
        assert "needs [workers] enabled = true" in done.stderr


def test_two_workers_deliver_every_batch_once(
    tmp_path: Path, pg_fresh_url: str, sink: Sink, start_worker: Callable[..., wk.Worker]
) -> None:
    path = wk.make_folder(tmp_path, pg_fresh_url, port=sink.port, n=N, batch=BATCH)
    queued = ws.run_cli(path, "send", "--week", ws.WEEK)
    assert queued.returncode == 0, queued.stderr
    assert f"issue {ws.WEEK}: {N} message(s) queued in {N // BATCH} batch(es)" in queued.stdout
    assert wk.jobs(pg_fresh_url) == N // BATCH
    assert wk.counts(path)[Delivery.PENDING] == N  # queued, not sent: the send returned at once
    assert sink.number("count") == 0

    workers = [start_worker(path, f"w{i}", "--concurrency", "2") for i in range(2)]
    wk.wait_until(lambda: sink.number("count") >= N and wk.jobs(pg_fresh_url) == 0, workers, "every batch")
    got = sink.received()
    assert len({msgid for _, msgid in got}) == N
    assert duplicates(sink) == 0
    assert {rcpt for rcpt, _ in got} == {p.email for p in wk.people(N)}
    assert wk.counts(path)[Delivery.SENT] == N
    assert sink.number("peak") <= 4  # two workers, two connections each
    for w in workers:
        assert f"issue {ws.WEEK} batch" in w.output  # both took part


KILL_N = 1000
KILL_BATCH = 50


def _settled(path: Path, n: int) -> Callable[[], bool]:
    """Every row sent or in doubt (nothing left to do, claimed or to retry)."""

    def done() -> bool:
        c = wk.counts(path)
        return c[Delivery.SENT] + c[Delivery.UNKNOWN] == n

    return done


@pytest.mark.parametrize("point", ["first-messages", "mid-issue", "reply-held"])
def test_a_killed_worker_leaves_at_most_its_connections_in_doubt(
    point: str, tmp_path: Path, pg_fresh_url: str, sink: Sink, start_worker: Callable[..., wk.Worker]
) -> None:
    n = KILL_N
    path = wk.make_folder(tmp_path, pg_fresh_url, port=sink.port, n=n, batch=KILL_BATCH)
    assert ws.run_cli(path, "send", "--week", ws.WEEK).returncode == 0
    victim = start_worker(path, "victim", "--concurrency", "2")
    others: list[wk.Worker] = []
    if point == "first-messages":
        # Killed early in its first batches, before the other worker even starts.
        wk.wait_until(lambda: sink.number("count") >= 5, [victim], "the first messages")
        victim.kill()
        shown = ws.run_cli(path, "status", "--week", ws.WEEK)
        assert "batches: " in shown.stdout and " running" in shown.stdout
        # The dead worker still holds them, by name.
        assert re.search(rf"queue send\) on [^ ]+:{victim.proc.pid}, (heartbeat|gone)", shown.stdout), shown.stdout
        others.append(start_worker(path, "survivor", "--concurrency", "2"))
    else:
        others.append(start_worker(path, "survivor", "--concurrency", "2"))
        wk.wait_until(lambda: sink.number("count") >= n // 3, [victim, *others], "a third of the issue")
        if point == "reply-held":
            # Every connection waits for the reply to its final dot: the victim dies holding two.
            sink.ask("hold")
            wk.wait_until(lambda: sink.number("held") >= 4, [victim, *others], "four replies held")
        victim.kill()
        sink.ask("release")
    wk.wait_until(_settled(path, n), [victim, *others], "the survivor to finish the issue", timeout=60)

    counts = wk.counts(path)
    in_doubt = counts[Delivery.UNKNOWN]
    assert counts[Delivery.SENT] + in_doubt == n
    assert in_doubt <= 2  # the victim's two connections
    if point == "reply-held":
        assert in_doubt >= 1  # it died waiting for replies
    assert duplicates(sink) == 0
    got = {rcpt for rcpt, _ in sink.received()}
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        doubted = [r.email for r in store.deliveries(ws.WEEK, Delivery.UNKNOWN)]
        sent = {r.email for r in store.deliveries(ws.WEEK, Delivery.SENT)}
    assert sent <= got
    if point == "first-messages":
        assert "its worker stopped" in others[0].output  # found stalled and queued again

    shown = ws.run_cli(path, "status", "--week", ws.WEEK)
    assert shown.returncode == 0, shown.stderr
    assert f"issue {ws.WEEK}: 0 to do, 0 doing, {n - in_doubt} sent, {in_doubt} in doubt" in shown.stdout
    for email in doubted:
        assert f"in doubt: {email}: in doubt: the process stopped while sending" in shown.stdout

    again = ws.run_cli(path, "reconcile", "--week", ws.WEEK, "--resend-in-doubt")
    assert again.returncode == 0, again.stderr
    wk.wait_until(lambda: wk.counts(path)[Delivery.SENT] == n, others, "the rows in doubt sent again")
    assert duplicates(sink) <= in_doubt
    assert {rcpt for rcpt, _ in sink.received()} == {p.email for p in wk.people(n)}


def test_the_same_batch_run_twice_at_once_sends_no_one_twice(
    tmp_path: Path, pg_fresh_url: str, sink: Sink, start_worker: Callable[..., wk.Worker]
) -> None:
    from digest.pipeline.batches import plan_batches
    from digest.workers.queue import SEND_TASK, make_app

    n = 400
    path = wk.make_folder(tmp_path, pg_fresh_url, port=sink.port, n=n, batch=n)
    config = ws.load(path)

    class Hold:
        """A queue that takes nothing: the rows are planned, the test queues them itself."""

        def active(self, issue_key: str) -> int:
            return 0

        def put(self, issue_key: str, batches: object) -> int:
            return 0

    with pipeline.open_store(config) as store:
        plan_batches(config, store, (IsoWeek.parse(ws.WEEK),), Hold(), clock=ws.fixed_clock())
    workers = [start_worker(path, f"w{i}", "--concurrency", "2") for i in range(2)]
    app = make_app(config)
    emails = [p.email for p in wk.people(n)]
    with app.open():
        for _ in range(2):
            app.configure_task(SEND_TASK, queue="send").defer(issue=ws.WEEK, batch=0, emails=emails, relay="")
    wk.wait_until(lambda: wk.jobs(pg_fresh_url) == 0, workers, "both copies of the batch")
    assert duplicates(sink) == 0
    assert sink.number("count") == n
    assert wk.counts(path)[Delivery.SENT] == n
    runs = re.findall(rf"issue {ws.WEEK} batch 0: (\d+) sent", "".join(w.output for w in workers))
    assert len(runs) == 2 and sum(map(int, runs)) == n  # both copies ran; between them, each row once


def test_a_second_send_while_batches_are_queued_queues_nothing(tmp_path: Path, pg_fresh_url: str, sink: Sink) -> None:
    path = wk.make_folder(tmp_path, pg_fresh_url, port=sink.port, n=200, batch=50)
    first = ws.run_cli(path, "send", "--week", ws.WEEK)
    assert f"issue {ws.WEEK}: 200 message(s) queued in 4 batch(es)" in first.stdout
    for args in (["send", "--week", ws.WEEK], ["send", "--week", ws.WEEK, "--retry-failed"]):
        again = ws.run_cli(path, *args)
        assert again.returncode == 0, again.stderr
        assert f"issue {ws.WEEK}: nothing queued: 4 batch(es) of it are queued or running" in again.stdout
    assert wk.jobs(pg_fresh_url) == 4
    # The cron one-shot with [workers]: fetch, finish the unfinished issue (queued already), then the due week.
    ran = ws.run_cli(path, "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"issue {ws.WEEK}: nothing queued: 4 batch(es) of it are queued or running" in ran.stdout
    assert re.search(r"nothing sent: issue \d{4}-W\d\d has 0 entries", ran.stdout), ran.stdout
    assert wk.jobs(pg_fresh_url) == 4
    shown = ws.run_cli(path, "status")
    assert shown.stdout.startswith("workers: 0 alive, 0 without a recent heartbeat\n")
    assert f"issue {ws.WEEK}: 200 to do, 0 doing, 0 sent, 0 in doubt" in shown.stdout
    assert "batches: 4 queued, 0 running, 0 failed" in shown.stdout
    assert sink.number("count") == 0
    never = ws.run_cli(path, "reconcile", "--week", "2018-W05")
    assert never.returncode == 2
    assert "--week: issue 2018-W05 has not been sent (nothing to reconcile)" in never.stderr
    hostile = ws.run_cli(path, "reconcile", "--week", "2018-W02'; DROP TABLE deliveries; --")
    assert hostile.returncode == 2 and "--week: not an ISO week" in hostile.stderr


def test_three_workers_plan_once_per_tick(
    tmp_path: Path, pg_fresh_url: str, sink: Sink, start_worker: Callable[..., wk.Worker]
) -> None:
    path = wk.make_folder(tmp_path, pg_fresh_url, port=sink.port, n=20, extra='plan_cron = "* * * * * *"\n')
    workers = [start_worker(path, f"w{i}", "--concurrency", "1") for i in range(3)]
    wk.wait_until(lambda: all("queues all" in w.output for w in workers), workers, "three workers up")
    time.sleep(10)
    for w in workers:
        assert w.stop() == 143  # SIGTERM: a clean stop
    ticks = Counter(int(t) for w in workers for t in re.findall(r"plan tick (\d+)", w.output))
    assert len(ticks) >= 7  # about one a second
    assert set(ticks.values()) == {1}  # each tick planned by exactly one of the three
    assert max(ticks) - min(ticks) <= len(ticks) + 2  # and no long gaps
    assert sum(1 for w in workers if "plan tick" in w.output) >= 1


def test_two_relays_each_within_its_caps_and_refusals_retried(
    tmp_path: Path, pg_fresh_url: str, start_worker: Callable[..., wk.Worker]
) -> None:
    a, b = Sink(tmp_path / "a.log"), Sink(tmp_path / "b.log")
    try:
        relays = (
            f'[[sender.relays]]\nname = "a"\nport = {a.port}\nconnections = 2\n'
            f'[[sender.relays]]\nname = "b"\nport = {b.port}\nconnections = 2\nrate = 40\n'
        )
        n, batch = 200, 25
        path = wk.make_folder(tmp_path, pg_fresh_url, port=1, n=n, batch=batch, extra=relays)
        text = path.read_text(encoding="utf-8").replace("[sender]\n", "[sender]\nmax_attempts = 2\n", 1)
        path.write_text(text, encoding="utf-8")
        refused = "w00030@example.org"  # in batch 1: relay b
        b.ask("refuse 451 3")  # the next three RCPTs: refused for now, then taken
        b.ask(f"refuse 451 1000 {refused}")  # this one: refused every time
        queued = ws.run_cli(path, "send", "--week", ws.WEEK)
        assert f"{n} message(s) queued in {n // batch} batch(es)" in queued.stdout
        queues = wk.sql(pg_fresh_url, "SELECT queue_name, count(*) FROM procrastinate_jobs GROUP BY 1 ORDER BY 1")
        assert queues == [("send.a", 4), ("send.b", 4)]

        started = time.monotonic()
        worker = start_worker(path, "w", "--concurrency", "6")
        wk.wait_until(lambda: wk.counts(path)[Delivery.SENT] == n - 1, [worker], "all but the refused one")
        took = time.monotonic() - started
        # The refused one: tried again by a later run of its batch (a retry with backoff), never marked sent.
        wk.wait_until(
            lambda: any(r.attempts >= 2 for r in _rows(path, Delivery.FAILED_TEMPORARY)), [worker], "a job retry"
        )
        assert {r.email for r in _rows(path, Delivery.FAILED_TEMPORARY)} == {refused}
        assert "refused for now; retried later" in worker.output
        retrying = wk.sql(
            pg_fresh_url,
            "SELECT attempts FROM procrastinate_jobs WHERE status = 'todo' AND (args->>'batch')::int = 1",
        )
        assert retrying and int(retrying[0][0]) >= 1  # type: ignore[call-overload]

        got_a, got_b = a.received(), b.received()
        assert refused not in {r for r, _ in got_a + got_b}
        assert len(got_a) + len(got_b) == n - 1 and duplicates(a) == duplicates(b) == 0
        assert {r for r, _ in got_b} == {p.email for i, p in enumerate(wk.people(n)) if (i // batch) % 2} - {refused}
        assert a.number("peak") <= 2 and b.number("peak") <= 2  # one worker: each relay's connections
        assert took >= (len(got_b) - 1) / 40 - 0.5  # relay b's rate, shared by the worker's threads
    finally:
        a.close()
        b.close()


def _rows(path: Path, state: Delivery) -> list[DeliveryRow]:
    with pipeline.open_store(ws.load(path)) as store:
        return store.deliveries(ws.WEEK, state)


def test_every_workers_and_relays_key_is_in_the_readme() -> None:
    from digest.config import RelaySettings, WorkersSettings

    readme = (ws.REPO / "README.md").read_text(encoding="utf-8")
    assert "[workers]" in readme and "[[sender.relays]]" in readme
    for cls in (WorkersSettings, RelaySettings):
        for key in cls.__slots__:  # type: ignore[attr-defined]
            if key != "password":
                assert re.search(rf"^{key} = ", readme, re.M), f"config key {key} is not in README.md"


def test_sigterm_stops_a_worker_cleanly_and_its_batches_go_on_elsewhere(
    tmp_path: Path, pg_fresh_url: str, sink: Sink, start_worker: Callable[..., wk.Worker]
) -> None:
    n = 600
    path = wk.make_folder(tmp_path, pg_fresh_url, port=sink.port, n=n, batch=100)
    sink.ask("slow 0.01")
    assert ws.run_cli(path, "send", "--week", ws.WEEK).returncode == 0
    first = start_worker(path, "first", "--concurrency", "2")
    wk.wait_until(lambda: sink.number("count") >= 50, [first], "the first messages")
    assert first.stop() == 143
    assert "interrupted: the messages in flight were sent and recorded" in first.output
    assert "message(s) the worker stopped; retried later" in first.output
    after_stop = wk.counts(path)
    assert after_stop[Delivery.CLAIMED] == after_stop[Delivery.UNKNOWN] == 0  # nothing left in doubt
    assert 50 <= after_stop[Delivery.SENT] < n
    sink.ask("slow 0")
    second = start_worker(path, "second", "--concurrency", "2")
    wk.wait_until(lambda: wk.counts(path)[Delivery.SENT] == n, [first, second], "the rest, by the second worker")
    assert duplicates(sink) == 0
    assert len(sink.received()) == n


def test_the_periodic_plan_follows_the_schedule_and_the_tasks_register(tmp_path: Path) -> None:
    import datetime as dt

    from digest.workers.tasks import Runtime, build_app, schedule_due, stalled_cron

    base = PG_HEAD + 'schedule = "mon 08:00"\ntimezone = "Europe/Berlin"\n'
    config = load_config(_config(tmp_path, base + '[sender]\ntransport = "smtp"\n[workers]\nenabled = true\n'), env={})
    monday = dt.datetime(2018, 1, 15, 7, 0, tzinfo=dt.UTC)  # 08:00 in Berlin (winter)
    assert schedule_due(config, int(monday.timestamp()))
    assert schedule_due(config, int((monday + dt.timedelta(seconds=59)).timestamp()))
    for off in (dt.timedelta(minutes=1), dt.timedelta(seconds=-1), dt.timedelta(days=1), dt.timedelta(hours=1)):
        assert not schedule_due(config, int((monday + off).timestamp())), off
    assert stalled_cron(config) == "* * * * * */20"  # stalled_after = 60: three looks a minute

    runtime = Runtime(config)
    # A job naming a relay this worker does not know is refused before anything is read or sent.
    with pytest.raises(SendError, match=r"is for relay 'eu; rm -rf', which is not configured here"):
        runtime.send_batch("2018-W02", 0, ["a@example.org"], "eu; rm -rf")
    app = build_app(config, runtime)
    crons = sorted((t.task.name, t.cron) for t in app.periodic_registry.periodic_tasks.values())
    assert crons == [("digest.plan", "* * * * *"), ("digest.retry_stalled", "* * * * * */20")]
    assert "digest.send_batch" in app.tasks
