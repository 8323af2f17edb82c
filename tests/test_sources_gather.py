"""gather(): many sources at once; one bad source never spoils the others."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.config import FetchSettings
from digest.models import FetchStatus, ListingFormat, Source, SourceKind, SourceResult, SourceState
from digest.sources import gather, gather_async
from tests.fixtures.http_server import FeedServer

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _sources(feed_server: FeedServer, data_dir: Path, tmp_path: Path) -> list[Source]:
    feed = SourceKind.FEED
    return [
        Source("rss", feed, feed_server.url("feeds/rss2.xml")),
        Source("down", feed, feed_server.url("status/500")),
        Source("slow", feed, feed_server.url("slow/feeds/atom.xml")),
        Source("bomb", feed, feed_server.url("gzip-bomb/20")),
        Source("json", feed, feed_server.url("feeds/jsonfeed.json")),
        Source("gone", feed, str(tmp_path / "missing.xml")),
        Source("lol", feed, feed_server.url("feeds/entity.xml")),
        Source("page", feed, feed_server.url("feeds/notafeed.html")),
        Source(
            "cyber",
            SourceKind.LISTING,
            str(data_dir / "listings" / "china-us-focus-cyber.txt"),
            ListingFormat.TEXT,
        ),
        Source("atom", feed, feed_server.url("gzip/feeds/atom.xml")),
    ]


@pytest.mark.parametrize("concurrency", [8, 2])
def test_one_bad_source_leaves_the_others_intact(
    feed_server: FeedServer, data_dir: Path, tmp_path: Path, concurrency: int
) -> None:
    sources = _sources(feed_server, data_dir, tmp_path)
    settings = FetchSettings(
        allow_private=("127.0.0.1",), deadline=2, connect_timeout=2, max_bytes=1_000_000, concurrency=concurrency
    )
    seen: list[SourceResult] = []
    results = gather(sources, {}, settings, SHANGHAI, progress=seen.append)

    assert [r.source for r in results] == [s.name for s in sources]
    by = {r.source: r for r in results}
    assert {name: by[name].status for name in by} == {
        "rss": FetchStatus.OK,
        "down": FetchStatus.FAILED,
        "slow": FetchStatus.FAILED,
        "bomb": FetchStatus.FAILED,
        "json": FetchStatus.OK,
        "gone": FetchStatus.FAILED,
        "lol": FetchStatus.FAILED,
        "page": FetchStatus.FAILED,
        "cyber": FetchStatus.OK,
        "atom": FetchStatus.OK,
    }
    assert by["down"].error == "HTTP 500 Internal Server Error"
    assert by["slow"].error == "timed out after 2s"
    assert by["bomb"].error == "body over 1000000 bytes"
    assert by["gone"].error.startswith("no such file: ")
    assert by["lol"].error == "XML entity declarations are refused"
    assert by["page"].error.startswith("not a feed")
    assert [len(by[n].entries) for n in ("rss", "json", "cyber", "atom")] == [3, 2, 10, 2]
    for r in results:
        assert "\n" not in r.error
        assert r.elapsed >= 0
        if r.status is FetchStatus.OK:
            assert r.error == "" and r.state is not None
            assert all(e.source == r.source for e in r.entries)
        else:
            assert r.state is None and r.entries == ()
    # progress saw each result once, as it finished.
    assert sorted(r.source for r in seen) == sorted(s.name for s in sources)
    assert {r.source: r for r in seen} == by


def test_states_are_per_source_and_304_is_not_modified(feed_server: FeedServer, data_dir: Path) -> None:
    sources = [
        Source("a", SourceKind.FEED, feed_server.url("etag/feeds/rss2.xml")),
        Source("b", SourceKind.FEED, feed_server.url("etag/feeds/atom.xml")),
    ]
    settings = FetchSettings(allow_private=("127.0.0.1",), deadline=5)
    first = gather(sources, {}, settings, SHANGHAI)
    assert [r.status for r in first] == [FetchStatus.OK, FetchStatus.OK]
    states = {r.source: r.state for r in first if r.state is not None}
    assert states["a"].etag != states["b"].etag
    # Only "a" is remembered: "a" is not modified, "b" is fetched again.
    second = gather(sources, {"a": states["a"]}, settings, SHANGHAI)
    assert [r.status for r in second] == [FetchStatus.NOT_MODIFIED, FetchStatus.OK]
    assert second[0].entries == () and second[0].state == states["a"]
    assert [e.id for e in second[1].entries] == [e.id for e in first[1].entries]


def test_new_state_resets_failures_and_records_counts(feed_server: FeedServer) -> None:
    source = Source("a", SourceKind.FEED, feed_server.url("etag/feeds/rss2.xml"))
    [res] = gather(
        [source], {"a": SourceState(failures=3)}, FetchSettings(allow_private=("127.0.0.1",), deadline=5), SHANGHAI
    )
    assert res.state is not None
    assert (res.state.failures, res.state.item_count) == (0, 3)


def test_empty_source_list() -> None:
    assert gather([], {}, FetchSettings(), SHANGHAI) == []


def test_gather_async_inside_a_running_loop(feed_server: FeedServer) -> None:
    source = Source("rss", SourceKind.FEED, feed_server.url("feeds/rss091.xml"))

    async def main() -> list[SourceResult]:
        return await gather_async([source], {}, FetchSettings(allow_private=("127.0.0.1",), deadline=5), SHANGHAI)

    [res] = asyncio.run(main())
    assert res.status is FetchStatus.OK and res.entries[0].title == "Old item"


def test_many_sources_parse_in_worker_processes_with_the_same_results(
    feed_server: FeedServer, data_dir: Path, tmp_path: Path
) -> None:
    from digest.sources import POOL_FROM, parse_pool

    few = _sources(feed_server, data_dir, tmp_path)
    # Enough sources for worker processes: every source twice over, under new names.
    many = [Source(f"{s.name}-{i}", s.kind, s.url, s.format) for i in range(2) for s in few]
    many += [Source(f"rss-extra-{i}", SourceKind.FEED, feed_server.url("feeds/rss2.xml")) for i in range(POOL_FROM)]
    pool = parse_pool(len(many))
    assert pool is not None  # the path under test really uses processes
    pool.shutdown()
    assert parse_pool(len(few)) is None
    settings = FetchSettings(
        allow_private=("127.0.0.1",), deadline=2, connect_timeout=2, max_bytes=1_000_000, concurrency=8
    )

    alone = {r.source: r for r in gather(few, {}, settings, SHANGHAI)}
    pooled = {r.source: r for r in gather(many, {}, settings, SHANGHAI)}

    for name, single in alone.items():
        for i in range(2):
            twin = pooled[f"{name}-{i}"]
            assert twin.status is single.status
            # A ParseError raised in a worker comes back whole, reason included.
            assert twin.error == single.error
            assert [(e.title, e.link, e.published, e.authors) for e in twin.entries] == [
                (e.title, e.link, e.published, e.authors) for e in single.entries
            ]
    assert all(pooled[f"rss-extra-{i}"].status is FetchStatus.OK for i in range(POOL_FROM))


def _big_rss(items: int) -> bytes:
    body = "".join(
        f"<item><title>Item {i}</title><link>https://big.example.org/{i}</link><guid>big-{i}</guid>"
        f"<description>{'Words of the item. ' * 20}</description></item>"
        for i in range(items)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>{body}</channel></rss>'.encode()


def test_a_body_waiting_for_its_parse_leaves_the_request_slot_to_the_next_source(feed_server: FeedServer) -> None:
    # One request at a time: the small feed's request must not wait for the big feed's parse.
    big = Source("big", SourceKind.FEED, feed_server.page("big.xml", _big_rss(2000), "application/rss+xml"))
    small = Source("small", SourceKind.FEED, feed_server.url("feeds/rss2.xml"))
    settings = FetchSettings(allow_private=("127.0.0.1",), deadline=60, concurrency=1, max_entries=2000)
    seen: list[SourceResult] = []

    results = gather([big, small], {}, settings, SHANGHAI, progress=seen.append)

    assert [(r.source, r.status, len(r.entries)) for r in results] == [
        ("big", FetchStatus.OK, 2000),
        ("small", FetchStatus.OK, 3),
    ]
    assert [r.source for r in seen] == ["small", "big"]  # the small one was fetched and parsed meanwhile


def test_many_sources_all_answering_304_start_no_parser_and_load_no_parser_module(feed_server: FeedServer) -> None:
    from digest.sources import POOL_FROM

    # In a fresh process: this one has imported the parsers long ago.
    probe = f"""
import sys
from zoneinfo import ZoneInfo
from digest.config import FetchSettings
from digest.models import Source, SourceKind, SourceState
from digest.sources import gather
url = {feed_server.url("etag/feeds/rss2.xml")!r}
settings = FetchSettings(allow_private=("127.0.0.1",), deadline=10)
[first] = gather([Source("a", SourceKind.FEED, url)], {{}}, settings, ZoneInfo("UTC"))
assert first.state is not None
sources = [Source(f"s{{i}}", SourceKind.FEED, url) for i in range({POOL_FROM})]
results = gather(sources, {{s.name: first.state for s in sources}}, settings, ZoneInfo("UTC"))
print(sorted({{r.status.value for r in results}}), "multiprocessing" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    # The first gather parsed one feed (in a thread); the 304s then needed no worker process.
    assert done.stdout.split() == ["['not_modified']", "False"], done.stderr
