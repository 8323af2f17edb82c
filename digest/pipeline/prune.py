"""``digest prune``, and the once-a-day prune of ``digest run``: the ``[store]`` keep settings applied."""

from __future__ import annotations

import datetime as dt

from digest.config import Config
from digest.store import PruneCounts, Store

#: ``digest run`` prunes when the last prune is at least this old.
PRUNE_EVERY = dt.timedelta(days=1)


def prune(config: Config, store: Store, now: dt.datetime) -> PruneCounts:
    """Compact old finished ledgers and delete long-unlisted entries, as ``[store]`` says."""
    keep = config.store
    return store.prune(now, keep_deliveries=keep.keep_deliveries, keep_entries=keep.keep_entries)


def prune_if_due(config: Config, store: Store, now: dt.datetime) -> PruneCounts | None:
    """``prune`` when it last ran a day or more ago (or never); None when it was not due."""
    last = store.last_prune()
    if last is not None and now - last < PRUNE_EVERY:
        return None
    return prune(config, store, now)
