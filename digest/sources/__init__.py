"""Gathering: every configured source → a ``SourceResult`` with its entries.

The sources stage fetches (``http``), parses (``feed``, ``listing_html``,
``listing_text``) and gives each entry a stable id (``ids``). It never
touches the store: the caller passes in what the store remembers of each
source (``SourceState``) and stores the new state it gets back.

One source's trouble stays that source's: a failure, a timeout, a huge or
malformed body becomes a ``failed`` result with a one-line ``error``, and
the other sources go on. A listing whose ``item`` selector suddenly matches
nothing, or far fewer items than last time, is ``broken``: its entries are
held back, since they are likely not entries at all, and its state is left
as it was.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import httpx

from digest.config import FetchSettings
from digest.errors import ParseError, SourceError
from digest.models import Entry, FetchStatus, ListingFormat, Source, SourceKind, SourceResult, SourceState
from digest.sources.feed import parse_feed
from digest.sources.http import Fetched, fetch, make_client
from digest.sources.listing_html import parse_html_listing
from digest.sources.listing_text import parse_text_listing
from digest.sources.text import collapse, decode

__all__ = ["Parsed", "broken_reason", "gather", "gather_async", "gather_one", "parse_fetched"]

Progress = Callable[[SourceResult], None]


@dataclass(frozen=True, slots=True)
class Parsed:
    """Entries parsed from one fetch, and the item count to compare next time."""

    entries: tuple[Entry, ...]
    item_count: int


def parse_fetched(source: Source, fetched: Fetched, tz: ZoneInfo) -> Parsed:
    """Parse fetched bytes as the source's kind and format says; ``ParseError`` if they are not."""
    if source.kind is SourceKind.FEED:
        entries = parse_feed(source, fetched.body, fetched.content_type, fetched.url, tz)
        return Parsed(tuple(entries), len(entries))
    text = decode(fetched.body, fetched.content_type).text
    if source.format is ListingFormat.TEXT:
        entries = parse_text_listing(source, text, tz, fetched.url)
        return Parsed(tuple(entries), len(entries))
    if source.selectors is None:
        raise ParseError(source.name, "an html listing needs selectors (at least item)")
    listing = parse_html_listing(source, text, fetched.url, tz)
    return Parsed(listing.entries, listing.item_count)


def broken_reason(source: Source, count: int, state: SourceState, ratio: float) -> str:
    """Why a listing with ``count`` items looks broken, or ``""`` when it looks fine.

    Broken means no items at all, or fewer than ``ratio`` times the count
    of the last good fetch.
    """
    what = f"item selector {source.selectors.item!r}" if source.selectors else "the text listing"
    unit = "items" if source.selectors else "dated entries"
    if count == 0:
        return f"{what} matched no {unit}; has the page changed?"
    if state.item_count and count < state.item_count * ratio:
        return f"{what} matched {count} {unit}, far fewer than {state.item_count} last time"
    return ""


#: From this many sources on, parsing runs in worker processes (one per core): parsing is
#: CPU-bound (feedparser costs about 1 ms an entry), and a thread would hold the one GIL that
#: the fetching event loop needs too. Below it, starting the workers costs more than it saves.
POOL_FROM = 16


def parse_pool(count: int) -> concurrent.futures.ProcessPoolExecutor | None:
    """Worker processes for parsing ``count`` sources, or None when a thread is cheaper."""
    cores = os.cpu_count() or 1
    if count < POOL_FROM or cores < 2:
        return None
    # forkserver: the fetching process has threads (event loop, executor), which fork would copy mid-state.
    context = multiprocessing.get_context("forkserver")
    return concurrent.futures.ProcessPoolExecutor(max_workers=min(cores, 4), mp_context=context)


async def gather_one(
    client: httpx.AsyncClient,
    source: Source,
    state: SourceState,
    settings: FetchSettings,
    tz: ZoneInfo,
    pool: concurrent.futures.Executor | None = None,
) -> SourceResult:
    """Fetch and parse one source; its errors become a ``failed`` or ``broken`` result.

    ``pool`` runs the parsing (default: a thread).
    """
    started = time.monotonic()

    def result(
        status: FetchStatus,
        *,
        entries: tuple[Entry, ...] = (),
        state: SourceState | None = None,
        error: str = "",
    ) -> SourceResult:
        elapsed = time.monotonic() - started
        return SourceResult(source.name, status, entries=entries, state=state, error=error, elapsed=elapsed)

    try:
        fetched = await fetch(client, source, state, settings)
        if fetched.not_modified:
            return result(FetchStatus.NOT_MODIFIED, state=state)
        loop = asyncio.get_running_loop()
        try:
            parsed = await loop.run_in_executor(pool, parse_fetched, source, fetched, tz)
        except BrokenProcessPool as exc:
            raise ParseError(source.name, "the parser process died while parsing this source") from exc
    except SourceError as err:
        return result(FetchStatus.FAILED, error=collapse(err.reason))
    if source.kind is SourceKind.LISTING:
        problem = broken_reason(source, parsed.item_count, state, settings.broken_ratio)
        if problem:
            return result(FetchStatus.BROKEN, error=problem)
    new_state = SourceState(
        etag=fetched.etag, last_modified=fetched.last_modified, item_count=parsed.item_count, failures=0
    )
    return result(FetchStatus.OK, entries=parsed.entries, state=new_state)


async def gather_async(
    sources: Sequence[Source],
    states: Mapping[str, SourceState],
    settings: FetchSettings,
    tz: ZoneInfo,
    *,
    progress: Progress | None = None,
    client: httpx.AsyncClient | None = None,
) -> list[SourceResult]:
    """``gather`` for callers already inside an event loop; may share their ``client``."""
    limit = asyncio.Semaphore(settings.concurrency)
    own = client is None
    http = client if client is not None else make_client(settings)
    pool = parse_pool(len(sources))

    async def run(source: Source) -> SourceResult:
        async with limit:
            res = await gather_one(http, source, states.get(source.name) or SourceState(), settings, tz, pool)
        if progress is not None:
            progress(res)
        return res

    try:
        return list(await asyncio.gather(*(run(s) for s in sources)))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if own:
            await http.aclose()


def gather(
    sources: Sequence[Source],
    states: Mapping[str, SourceState],
    settings: FetchSettings,
    tz: ZoneInfo,
    *,
    progress: Progress | None = None,
) -> list[SourceResult]:
    """Gather every source, at most ``settings.concurrency`` at a time.

    Returns one ``SourceResult`` per source, in the order of ``sources``;
    ``progress`` is called with each result as its source finishes. ``states``
    maps source names to what the store remembers (missing means new).
    Naive dates are read in ``tz``. Must not be called from inside a running
    event loop (use ``gather_async`` there).
    """
    return asyncio.run(gather_async(sources, states, settings, tz, progress=progress))
