"""Gathering: every configured source → a ``SourceResult`` with its entries.

The sources stage fetches (``http``), parses (``feed``, ``listing_html``,
``listing_text``) and gives each entry a stable id (``ids``). It never
touches the store: the caller passes in what the store remembers of each
source (``SourceState``) and stores the new state it gets back.

One source's trouble stays that source's: a failure, a timeout, a huge or
malformed body becomes a ``failed`` result with a one-line ``error``, and
the other sources go on. ``gather_one`` is the isolation boundary: any
exception from fetching or parsing one source (not only ``SourceError``:
``RecursionError``, ``MemoryError``, a library's ``ValueError``) becomes
that source's ``failed`` result naming the exception type, and fetching and
parsing together must finish within ``FetchSettings.deadline`` (a parse
that runs over fails the source; its thread or worker process is left
behind and never holds up the run). A listing whose ``item`` selector suddenly matches
nothing, or far fewer items than last time, is ``broken``: its entries are
held back, since they are likely not entries at all, and its state is left
as it was.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar
from zoneinfo import ZoneInfo

import httpx

from digest.config import FetchSettings
from digest.errors import ParseError, SourceError
from digest.models import Entry, FetchStatus, ListingFormat, Source, SourceKind, SourceResult, SourceState
from digest.sources.http import Fetched, fetch, make_client
from digest.sources.limits import Tally, capped, keep_newest
from digest.sources.text import collapse, decode, one_line

#: The parsers, imported by the first parse rather than with this package: a fetch whose
#: sources all answer 304 parses nothing and need not load feedparser and the listing parsers.
PARSERS = ("digest.sources.feed", "digest.sources.listing_html", "digest.sources.listing_text")

__all__ = [
    "ParseFailure",
    "Parsed",
    "broken_reason",
    "gather",
    "gather_async",
    "gather_one",
    "parse_fetched",
    "parse_isolated",
]

Progress = Callable[[SourceResult], None]
P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Parsed:
    """Entries parsed from one fetch, the item count to compare next time, and what was cut or dropped."""

    entries: tuple[Entry, ...]
    item_count: int
    tally: Tally = field(default_factory=Tally)


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """Why parsing one source failed, as a plain value (it crosses process boundaries safely)."""

    reason: str


def parse_fetched(source: Source, fetched: Fetched, tz: ZoneInfo, settings: FetchSettings | None = None) -> Parsed:
    """Parse fetched bytes as the source's kind and format says; ``ParseError`` if they are not.

    The newest ``settings.max_entries`` entries are kept, each summary and
    content cut to ``settings.max_text`` characters; the cuts are counted.
    """
    from digest.sources.feed import parse_feed
    from digest.sources.listing_html import parse_html_listing
    from digest.sources.listing_text import parse_text_listing

    settings = settings if settings is not None else FetchSettings()
    tally = Tally()
    if source.kind is SourceKind.FEED:
        entries = parse_feed(source, fetched.body, fetched.content_type, fetched.url, tz, tally, settings.max_entries)
        count = len(entries)
    else:
        text = decode(fetched.body, fetched.content_type).text
        if source.format is ListingFormat.TEXT:
            entries = parse_text_listing(source, text, tz, fetched.url, tally)
            count = len(entries)
        elif source.selectors is None:
            raise ParseError(source.name, "an html listing needs selectors (at least item)")
        else:
            listing = parse_html_listing(source, text, fetched.url, tz, tally)
            entries, count = list(listing.entries), listing.item_count
    kept = keep_newest(entries, settings.max_entries, tally)
    return Parsed(tuple(capped(e, settings.max_text, tally) for e in kept), count, tally)


def parse_isolated(source: Source, fetched: Fetched, tz: ZoneInfo, settings: FetchSettings) -> Parsed | ParseFailure:
    """``parse_fetched``, with every exception of the parse turned into a ``ParseFailure``.

    This is the isolation boundary of one source's parse: whatever the bytes
    make the parsers raise (``RecursionError``, ``MemoryError``, a
    ``ValueError`` from a library), it ends here as a value naming the
    exception type. Returning a value rather than raising also keeps a
    worker process from sending back an exception that cannot be pickled.
    """
    try:
        return parse_fetched(source, fetched, tz, settings)
    except SourceError as err:
        return ParseFailure(collapse(err.reason))
    except Exception as exc:  # the isolation boundary: one source's parse, whatever it raised
        log.debug("%s: parse failed", source.name, exc_info=exc)
        return ParseFailure(f"parse failed ({type(exc).__name__}): {one_line(exc)}")


async def _in_daemon_thread(
    source: Source, fetched: Fetched, tz: ZoneInfo, settings: FetchSettings
) -> Parsed | ParseFailure:
    """Run ``parse_isolated`` in a daemon thread: one that runs past its deadline never holds up exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Parsed | ParseFailure] = loop.create_future()

    def deliver(value: Parsed | ParseFailure) -> None:
        if not done.done():
            done.set_result(value)

    def work() -> None:
        value = parse_isolated(source, fetched, tz, settings)
        with contextlib.suppress(RuntimeError):  # the loop is gone: the run ended without this parse
            loop.call_soon_threadsafe(deliver, value)

    threading.Thread(target=work, name=f"parse {source.name}"[:60], daemon=True).start()
    return await done


async def _in_pool(
    pool: concurrent.futures.Executor, source: Source, fetched: Fetched, tz: ZoneInfo, settings: FetchSettings
) -> Parsed | ParseFailure:
    """Run ``parse_isolated`` in ``pool``, handing it the work from a thread.

    A process pool starts its workers inside ``submit``, and the first one
    waits for the fork server to come up (a few hundred milliseconds): on
    the event loop's thread, that would hold up every other source's request.
    """
    submitted = await asyncio.to_thread(pool.submit, parse_isolated, source, fetched, tz, settings)
    return await asyncio.wrap_future(submitted)


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


def wants_pool(count: int) -> bool:
    """Whether parsing ``count`` sources is worth worker processes (else a thread is cheaper)."""
    return count >= POOL_FROM and (os.cpu_count() or 1) >= 2


def parse_pool(count: int) -> concurrent.futures.ProcessPoolExecutor | None:
    """Worker processes for parsing ``count`` sources, or None when a thread is cheaper."""
    return _process_pool() if wants_pool(count) else None


def _process_pool() -> concurrent.futures.ProcessPoolExecutor:
    cores = os.cpu_count() or 1
    import multiprocessing  # here: a fetch of fewer sources never needs it

    # forkserver: the fetching process has threads (event loop, executor), which fork would copy mid-state.
    context = multiprocessing.get_context("forkserver")
    # The fork server imports the parsers once, and every worker forks from it with them loaded,
    # instead of each worker importing them inside its first parse (and that parse's deadline).
    context.set_forkserver_preload(["digest.sources", *PARSERS])
    return concurrent.futures.ProcessPoolExecutor(max_workers=min(cores, 4), mp_context=context)


class FirstUsePool(concurrent.futures.Executor):
    """``parse_pool``'s workers, made by the first ``submit``: a fetch that parses nothing starts no processes.

    A gathering whose sources all answer 304 has nothing to parse; making the
    pool up front cost it the multiprocessing machinery and a resource-tracker
    process all the same.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._stopped = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._stopped:  # a parse handed over after the gathering ended must not start a new pool
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._pool is None:
                self._pool = _process_pool()
            pool = self._pool
        return pool.submit(fn, *args, **kwargs)

    def stop(self) -> None:
        """``stop_pool`` of the pool, if one was made."""
        with self._lock:
            pool, self._pool, self._stopped = self._pool, None, True
        if pool is not None:
            stop_pool(pool)


async def gather_one(
    client: httpx.AsyncClient,
    source: Source,
    state: SourceState,
    settings: FetchSettings,
    tz: ZoneInfo,
    pool: concurrent.futures.Executor | None = None,
    *,
    network: asyncio.Semaphore | None = None,
) -> SourceResult:
    """Fetch and parse one source; its errors become a ``failed`` or ``broken`` result.

    ``pool`` runs the parsing (default: a thread). ``network`` is held while
    fetching only, and the deadline starts once it is ours: a body waiting
    for a parser no longer keeps a request slot idle.
    """
    started = time.monotonic()

    def result(
        status: FetchStatus,
        *,
        parsed: Parsed | None = None,
        state: SourceState | None = None,
        error: str = "",
    ) -> SourceResult:
        elapsed = time.monotonic() - started
        tally = parsed.tally if parsed is not None else Tally()
        return SourceResult(
            source.name,
            status,
            entries=parsed.entries if parsed is not None and status is FetchStatus.OK else (),
            state=state,
            error=error,
            elapsed=elapsed,
            dropped_links=tally.dropped_links,
            dropped_entries=tally.dropped_entries,
            bad_dates=tally.bad_dates,
            cut_entries=tally.cut_entries,
            cut_texts=tally.cut_texts,
        )

    async with network if network is not None else contextlib.nullcontext():
        started = time.monotonic()
        try:
            fetched = await fetch(client, source, state, settings)
        except SourceError as err:
            return result(FetchStatus.FAILED, error=collapse(err.reason))
        except Exception as exc:  # the isolation boundary of one source's fetch
            log.debug("%s: fetch failed", source.name, exc_info=exc)
            return result(FetchStatus.FAILED, error=f"fetch failed ({type(exc).__name__}): {one_line(exc)}")
    if fetched.not_modified:
        return result(FetchStatus.NOT_MODIFIED, state=state)
    # Fetching and parsing one source share one deadline.
    left = settings.deadline - (time.monotonic() - started)
    timed_out = f"timed out after {settings.deadline:g}s (fetching and parsing)"
    if left <= 0:
        return result(FetchStatus.FAILED, error=timed_out)
    try:
        if pool is None:
            outcome = await asyncio.wait_for(_in_daemon_thread(source, fetched, tz, settings), left)
        else:
            outcome = await asyncio.wait_for(_in_pool(pool, source, fetched, tz, settings), left)
    except TimeoutError:
        return result(FetchStatus.FAILED, error=timed_out)
    except concurrent.futures.BrokenExecutor:  # BrokenProcessPool: imported only with a pool
        return result(FetchStatus.FAILED, error="the parser process died while parsing this source")
    except Exception as exc:  # the pool could not run the parse or send back its outcome
        return result(FetchStatus.FAILED, error=f"parse failed ({type(exc).__name__}): {one_line(exc)}")
    if isinstance(outcome, ParseFailure):
        return result(FetchStatus.FAILED, error=outcome.reason)
    if source.kind is SourceKind.LISTING:
        problem = broken_reason(source, outcome.item_count, state, settings.broken_ratio)
        if problem:
            return result(FetchStatus.BROKEN, parsed=outcome, error=problem)
    new_state = SourceState(
        etag=fetched.etag, last_modified=fetched.last_modified, item_count=outcome.item_count, failures=0
    )
    return result(FetchStatus.OK, parsed=outcome, state=new_state)


def stop_pool(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Shut ``pool`` down without waiting for a parse that ran past its deadline (its worker is ended)."""
    # Python 3.11 has no ProcessPoolExecutor.terminate_workers; the worker processes are in _processes.
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.join(0.5)
        if proc.is_alive():
            proc.terminate()


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
    # At most `concurrency` requests at a time, and at most as many bodies again waiting for a
    # parser: a request slot is free as soon as its body is in, whatever the parsers' backlog.
    network = asyncio.Semaphore(settings.concurrency)
    in_hand = asyncio.Semaphore(2 * settings.concurrency)
    own = client is None
    http = client if client is not None else make_client(settings)
    pool = FirstUsePool() if wants_pool(len(sources)) else None

    async def run(source: Source) -> SourceResult:
        async with in_hand:
            state = states.get(source.name) or SourceState()
            res = await gather_one(http, source, state, settings, tz, pool, network=network)
        if progress is not None:
            progress(res)
        return res

    try:
        return list(await asyncio.gather(*(run(s) for s in sources)))
    finally:
        if pool is not None:
            pool.stop()
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
