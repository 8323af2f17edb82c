"""A working folder that sends through ``digest worker`` processes over a test PostgreSQL database.

``make_folder`` scaffolds it (every subscriber gets the issue: one variant,
so the numbers of rows and batches are exact), fetches and runs
``digest db migrate``. ``Worker`` is one ``digest worker`` subprocess with
its output in a file; ``wait_until`` polls a condition, failing with the
workers' output when it does not come.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import psycopg

from digest.models import Delivery
from digest.pipeline import open_store
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import Received


def people(n: int) -> list[ws.Row]:
    return [ws.Row(f"w{i:05d}@example.org", "", "") for i in range(n)]


def make_folder(
    root: Path,
    url: str,
    *,
    port: int,
    n: int,
    batch: int = 100,
    stalled: int = 3,
    connections: int = 2,
    extra: str = "",
) -> Path:
    workers = f"\n[workers]\nenabled = true\nbatch_size = {batch}\nstalled_after = {stalled}\n"
    path = ws.make_folder(root, people(n), port=port, connections=connections, extra=workers + extra)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('database = "sqlite:///digest.db"', f'database = "{url}"'), encoding="utf-8")
    ws.fetch(path)
    done = ws.run_cli(path, "db", "migrate")
    assert done.returncode == 0, done.stdout + done.stderr
    return path


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def sql(url: str, query: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn(url), autocommit=True) as conn:
        return list(conn.execute(query, args).fetchall())  # type: ignore[call-overload]


def jobs(url: str, status: str | None = None) -> int:
    rows = sql(
        url,
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'digest.send_batch'"
        " AND (%s::text IS NULL OR status::text = %s)",
        status,
        status,
    )
    return int(rows[0][0])  # type: ignore[call-overload]


def counts(path: Path, key: str = ws.WEEK) -> dict[Delivery, int]:
    with open_store(ws.load(path)) as store:
        return store.delivery_counts(key)


def message_ids(messages: Iterable[Received]) -> Counter[str]:
    ids: Counter[str] = Counter()
    for m in messages:
        msg = email.message_from_bytes(m.data, policy=email.policy.default)
        ids[str(msg["Message-ID"])] += 1
    return ids


class Worker:
    """One ``digest worker`` process; its output goes to ``<name>.log`` in ``folder``."""

    def __init__(self, config: Path, folder: Path, name: str, *args: str) -> None:
        self.name = name
        self.log = folder / f"{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ws.digest_cmd(config, "worker", *args),
                env=ws.cli_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def wait_until(condition: Callable[[], bool], workers: Iterable[Worker], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}\n{w.output[-3000:]}" for w in workers)
            raise AssertionError(f"gave up waiting for {what}\n{logs}")
        time.sleep(0.1)
