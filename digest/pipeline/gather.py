"""Fetch every source and record what it gave in the store.

Recording overlaps fetching: each source's result is handed, as soon as it
is in, to one store-writer thread, which commits the results in batches of
sources (one transaction, and a few statements, for many sources rather
than a transaction each). So the store work of the sources done so far runs
while the next requests are out, and the last response is followed only by
the last batch's commit. Each source's entries and new state (its ETag) still go in
together; a source whose values the store refuses is recorded as failed on
its own, and the rest of its batch is stored as if it had been alone.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType

from digest.config import Config
from digest.configcheck import redact
from digest.errors import ConfigError, StoreError
from digest.models import FetchStatus, SourceResult
from digest.sources import gather
from digest.store import FetchCounts, Store

log = logging.getLogger(__name__)


def open_store(config: Config) -> Store:
    """The store at ``digest.database``.

    A database that cannot be opened at all (no driver, a folder that cannot
    be made, a file that is not a database, a server that refuses us) is a
    config error naming the key; a database locked by another run is not.
    """
    try:
        store = Store.open(config.digest.database)
    except StoreError as exc:
        if "locked" in str(exc):
            raise
        raise ConfigError(f"{config.path}: digest.database: {exc}") from exc
    log.info("opened database %s", redact(config.digest.database))
    return store


@dataclass(frozen=True, slots=True)
class FetchLine:
    """One source's outcome and what the store made of it."""

    result: SourceResult
    counts: FetchCounts


def fetch_all(
    config: Config,
    store: Store,
    now: dt.datetime,
    progress: Callable[[SourceResult], None] | None = None,
) -> list[FetchLine]:
    """Gather every source and record each result; one bad source never blocks the rest."""
    # A paused source (enabled = false) is not fetched; its entries and state stay as they are.
    active = [s for s in config.sources if s.enabled]
    states = store.source_states()
    with Recorder(store, now, [s.name for s in active]) as recorder:

        def done(result: SourceResult) -> None:
            recorder.add(result)
            if progress is not None:
                progress(result)

        results = gather(active, states, config.fetch, config.digest.tz, progress=done)
    return recorder.lines_for(results)


#: The writer commits once this many results wait, or results with this many entries between
#: them: a transaction each (one per source) cost more than the few rows of a 304.
FLUSH_RESULTS = 64
FLUSH_ENTRIES = 200


class Recorder:
    """The store-writer thread of one fetch: ``add`` results as they come in, read the lines at the end.

    ``names`` are the sources in config order. The writer commits a batch
    once ``FLUSH_RESULTS`` results or ``FLUSH_ENTRIES`` entries wait, and the
    rest when the block ends. A result with entries is recorded only once
    every source before it is in: which source an entry two sources carry
    belongs to (the other's copy is a sighting) is decided by the order of
    recording, and that must stay the config's order, not the order the
    responses happened to arrive in. A result without entries (not
    modified, failed, broken) touches only its own source's rows and goes
    into the next batch.

    Leaving the ``with`` block waits for every added result to be recorded
    (also when the block raised: what was fetched is kept), then raises the
    store's error if the store refused even to record a failure.
    """

    def __init__(self, store: Store, now: dt.datetime, names: Sequence[str]) -> None:
        self._store = store
        self._now = now
        self._positions: dict[str, deque[int]] = {}
        for position, name in enumerate(names):
            self._positions.setdefault(name, deque()).append(position)
        self._count = len(names)
        self._ready = threading.Condition()
        self._waiting: list[tuple[int, SourceResult]] = []  # under _ready
        self._waiting_entries = 0
        self._ending = False
        # By the identity of the result added (kept here, so that identity stays its own).
        self._lines: dict[int, tuple[SourceResult, FetchLine]] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fetch: store writer", daemon=True)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._ready:
            self._ending = True
            self._ready.notify()
        self._thread.join()
        if self._error is not None and exc is None:
            raise self._error

    def add(self, result: SourceResult) -> None:
        """Queue ``result`` (of one of ``names``, each added once) for recording."""
        position = self._positions[result.source].popleft()
        with self._ready:
            self._waiting.append((position, result))
            self._waiting_entries += len(result.entries)
            if self._due():
                self._ready.notify()

    def lines_for(self, results: Sequence[SourceResult]) -> list[FetchLine]:
        """The recorded line of each of ``results`` (the very objects added), in their order."""
        return [self._lines[id(r)][1] for r in results]

    def _due(self) -> bool:
        return self._ending or len(self._waiting) >= FLUSH_RESULTS or self._waiting_entries >= FLUSH_ENTRIES

    def _run(self) -> None:
        arrived = [False] * self._count
        frontier = 0  # every source before this position is in
        held: dict[int, SourceResult] = {}
        ending = False
        while not ending:
            with self._ready:
                self._ready.wait_for(self._due)
                items, self._waiting, self._waiting_entries = self._waiting, [], 0
                ending = self._ending
            ready: dict[int, SourceResult] = {}
            for position, result in items:
                arrived[position] = True
                (held if result.entries else ready)[position] = result
            while frontier < self._count and arrived[frontier]:
                frontier += 1
            for position in [p for p in held if p < frontier or ending]:
                ready[position] = held.pop(position)
            todo = [ready[p] for p in sorted(ready)]
            if todo and self._error is None:
                try:
                    for result, line in zip(todo, record_batch(self._store, todo, self._now), strict=True):
                        self._lines[id(result)] = (result, line)
                except BaseException as exc:  # handed to the fetching thread in __exit__
                    self._error = exc


def record_batch(store: Store, results: Sequence[SourceResult], now: dt.datetime) -> list[FetchLine]:
    """Record ``results`` in one transaction; when the store refuses it, each on its own (``_record``)."""
    try:
        counted = store.record_fetches(results, now)
    except StoreError as err:
        log.info("a batch of %d sources could not be stored together (%s); storing them one by one", len(results), err)
        return [_record(store, r, now) for r in results]
    return [FetchLine(r, c) for r, c in zip(results, counted, strict=True)]


def _record(store: Store, result: SourceResult, now: dt.datetime) -> FetchLine:
    """Record one source's result; when the store refuses its values, record it as failed instead.

    A value the database cannot take (say, a date it cannot represent) is that
    source's problem: the others are recorded, and this one keeps its
    previous state and counts a failure. A store that refuses even that is
    down, and its error goes up.
    """
    try:
        return FetchLine(result, store.record_fetch(result, now))
    except StoreError as err:
        log.warning("%s: could not store its entries: %s", result.source, err)
        failed = replace(result, status=FetchStatus.FAILED, entries=(), state=None, error=f"could not be stored: {err}")
        return FetchLine(failed, store.record_fetch(failed, now))
