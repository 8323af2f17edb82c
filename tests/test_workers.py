"""``digest worker`` processes over PostgreSQL: batches, kills, races, periodic plans, relays.

Workers are real subprocesses; mail goes to the aiosmtpd server of
``tests/fixtures/smtp_server.py`` on loopback. The list is 4,000 addresses
in batches of 100 (the issue's 20,000 in 500s, scaled down to keep the
suite quick); ``stalled_after`` is 3 seconds.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from digest.config import load_config
from digest.errors import ConfigError
from digest.models import Delivery
from tests.data.send import workers as wk
from tests.data.send import workspace as ws
from tests.fixtures.sink_process import Sink

pytestmark = pytest.mark.postgres

N = 4000
BATCH = 100


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
    pg = '[digest]\ndatabase = "postgresql+psycopg://u@127.0.0.1/d"\n[workers]\nenabled = true\n'
    good = load_config(_config(tmp_path, pg + "batch_size = 500\nstalled_after = 3\n"), env={})
    assert (good.workers.enabled, good.workers.batch_size, good.workers.stalled_after) == (True, 500, 3.0)
    assert load_config(_config(tmp_path, "[workers]\nbatch_size = 10\n"), env={}).workers.enabled is False

    with pytest.raises(ConfigError, match=r"workers\.enabled: needs a PostgreSQL database"):
        load_config(_config(tmp_path, "[workers]\nenabled = true\n"), env={})
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
        ('[[sender.relays]]\nname = "../x"\n', r"sender\.relays\[0\]\.name"),
        (relay + relay, r"sender\.relays\[1\]\.name: 'a' is used"),
        ('[[sender.relays]]\nname = "a"\nconnections = 0\n', r"sender\.relays\[0\]\.connections"),
        ('[[sender.relays]]\nname = "a"\nport = 70000\n', r"sender\.relays\[0\]\.port"),
        ('[[sender.relays]]\nname = "a"\npassword = "x"\n', r"sender\.relays\[0\]\.password: unknown key"),
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


def test_db_migrate_on_a_new_database_applies_both(tmp_path: Path, pg_fresh_url: str) -> None:
    path = _config(tmp_path, f'[digest]\ndatabase = "{pg_fresh_url}"\n[workers]\nenabled = true\n')
    first = ws.run_cli(path, "db", "migrate")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("store: migrations 1, ")
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
