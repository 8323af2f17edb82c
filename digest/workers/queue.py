"""The job queue as digest sees it: Procrastinate's tables in the store's PostgreSQL database.

``JobQueue`` is the ``BatchQueue`` of ``pipeline.batches``: it counts an
issue's batches queued or running and defers one ``send_batch`` job per
batch, on the queue of its relay. It also applies Procrastinate's schema
(``digest db migrate``) and lists the batches for ``digest status``.
psycopg and Procrastinate errors become ``StoreError`` here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as pexc
from procrastinate.schema import SchemaManager

from digest.config import Config
from digest.errors import StoreError

SEND_TASK = "digest.send_batch"
PLAN_TASK = "digest.plan"
STALLED_TASK = "digest.retry_stalled"
#: The queue of the periodic tasks (planning, stalled batches).
PERIODIC_QUEUE = "periodic"
#: The queue of batches when no ``[[sender.relays]]`` are configured.
SEND_QUEUE = "send"


def conninfo(url: str) -> str:
    """The libpq URL for the store's SQLAlchemy URL (``postgresql+psycopg://`` → ``postgresql://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgresql"):
        raise StoreError(f"the workers need a PostgreSQL database, got {scheme or url!r}")
    return "postgresql://" + rest


def queue_error(exc: BaseException) -> StoreError:
    """A psycopg or Procrastinate error as the one line digest prints."""
    text = str(exc).strip()
    return StoreError(f"job queue: {text.splitlines()[0] if text else type(exc).__name__}")


def relay_queues(config: Config) -> tuple[str, ...]:
    """The queue of each relay, in order (one ``send`` queue without ``[[sender.relays]]``)."""
    return tuple(f"send.{r.name}" for r in config.sender.relays) or (SEND_QUEUE,)


def make_app(config: Config) -> procrastinate.App:
    """A Procrastinate app on the store's database (no tasks registered: enough to defer and to query)."""
    connector = procrastinate.PsycopgConnector(conninfo=conninfo(config.digest.database), min_size=1, max_size=4)
    return procrastinate.App(connector=connector)


@dataclass(frozen=True, slots=True)
class BatchJob:
    """One ``send_batch`` job: its batch, its state, and the worker that holds it."""

    id: int
    issue_key: str
    batch: int
    size: int
    queue: str
    status: str
    attempts: int
    worker_id: int | None
    heartbeat: dt.datetime | None


class JobQueue:
    """Procrastinate's queue on the store's database; open it with ``with JobQueue(config) as queue:``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dsn = conninfo(config.digest.database)
        self.app = make_app(config)
        self._open = False

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._open:
            self.app.close()
            self._open = False

    @contextmanager
    def _sql(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
                yield conn
        except psycopg.Error as exc:
            raise queue_error(exc) from exc

    def has_schema(self) -> bool:
        with self._sql() as conn:
            row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def apply_schema(self) -> bool:
        """Create Procrastinate's tables unless they exist; returns whether it did (idempotent)."""
        if self.has_schema():
            return False
        with self._sql() as conn:
            # Under an advisory lock: two hosts migrating at once must not both create the tables.
            conn.execute("SELECT pg_advisory_lock(727274)")
            try:
                if conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone() == (True,):
                    return False
                conn.execute(SchemaManager.get_schema())  # no parameters: its % signs stay as written
            finally:
                conn.execute("SELECT pg_advisory_unlock(727274)")
        return True

    def _need_schema(self) -> None:
        if not self.has_schema():
            raise StoreError("the job queue has no tables yet: run `digest db migrate`")

    def active(self, issue_key: str) -> int:
        """How many batches of the issue are queued (or waiting to be retried) or running."""
        self._need_schema()
        with self._sql() as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s AND status IN ('todo', 'doing')"
                " AND args->>'issue' = %s",
                (SEND_TASK, issue_key),
            ).fetchone()
        return int(row[0]) if row else 0

    def put(self, issue_key: str, batches: Sequence[tuple[str, ...]]) -> int:
        """Defer one ``send_batch`` job per batch, the relays' queues taking turns; returns how many."""
        self._need_schema()
        if not self._open:
            self.app.open()
            self._open = True
        queues = relay_queues(self.config)
        queued = 0
        for i, batch in enumerate(batches):
            queue = queues[i % len(queues)]
            relay = queue.removeprefix("send.") if self.config.sender.relays else ""
            # The queueing lock: the same batch is never waiting twice, however plans race.
            task = self.app.configure_task(SEND_TASK, queue=queue, queueing_lock=f"{SEND_TASK}:{issue_key}:{i}")
            try:
                task.defer(issue=issue_key, batch=i, emails=list(batch), relay=relay)
                queued += 1
            except pexc.AlreadyEnqueued:
                continue
            except (pexc.ProcrastinateException, psycopg.Error) as exc:
                raise queue_error(exc) from exc
        return queued

    def jobs(self, issue_key: str | None = None) -> list[BatchJob]:
        """The ``send_batch`` jobs still queued, running or failed (finished ones are deleted)."""
        self._need_schema()
        with self._sql() as conn:
            rows = conn.execute(
                "SELECT j.id, j.args->>'issue', (j.args->>'batch')::int, jsonb_array_length(j.args->'emails'),"
                " j.queue_name, j.status::text, j.attempts, j.worker_id, w.last_heartbeat"
                " FROM procrastinate_jobs j LEFT JOIN procrastinate_workers w ON w.id = j.worker_id"
                " WHERE j.task_name = %s AND (%s::text IS NULL OR j.args->>'issue' = %s) ORDER BY j.id",
                (SEND_TASK, issue_key, issue_key),
            ).fetchall()
        return [BatchJob(*row) for row in rows]

    def workers(self) -> list[tuple[int, dt.datetime]]:
        """The workers that are registered, with their last heartbeat."""
        self._need_schema()
        with self._sql() as conn:
            return [(int(i), hb) for i, hb in conn.execute("SELECT id, last_heartbeat FROM procrastinate_workers")]
