"""Fetch every source and record what it gave in the store."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

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
    results = gather(active, store.source_states(), config.fetch, config.digest.tz, progress=progress)
    return [_record(store, r, now) for r in results]


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
