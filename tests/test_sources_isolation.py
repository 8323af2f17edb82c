"""One source can never stop the run: hostile payloads next to a good feed, over loopback, through the CLI.

Each payload is served by the real loopback HTTP server beside a good feed
and gathered by ``digest fetch`` (and ``digest run``, which goes on to send
over a real SMTP server). Payloads that cannot be a feed make their source
``failed`` with a one-line reason; a bad link or date costs only that link
or date, counted in the report. The good feed is stored every time, and no
traceback ever reaches the output.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.config import FetchSettings
from digest.models import Entry, FetchStatus, ListingFormat, Source, SourceKind, SourceResult, SourceState
from digest.pipeline.gather import _record
from digest.sources import POOL_FROM, gather_one, parse_isolated, stop_pool
from digest.sources.http import Fetched, make_client
from digest.store import Store
from tests.data.send import workspace as ws
from tests.fixtures.http_server import FeedServer
from tests.fixtures.smtp_server import SmtpServer

JSONFEED = "https://jsonfeed.org/version/1.1"
UTC = ZoneInfo("UTC")
GOOD = "Good RSS"
BAD = "Hostile"


def _json_feed(items: str) -> bytes:
    return ('{"version": "' + JSONFEED + '", "title": "Hostile", "items": ' + items + "}").encode()


def _json_item(**fields: Any) -> str:
    item = {"id": "h1", "title": "A hostile item", "content_text": "Some text.", **fields}
    return "[" + json.dumps(item) + "]"


def _rss(item: str, home: str = "https://hostile.example.org/") -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Hostile</title>'
        f"<link>{home}</link><description>x</description>"
        f"<item>{item}</item></channel></rss>"
    ).encode()


def _rss_item(
    link: str = "https://hostile.example.org/a", date: str = "Mon, 08 Jan 2018 10:00:00 GMT", home: str = ""
) -> bytes:
    item = f"<title>A hostile item</title><link>{link}</link><guid>h1</guid><pubDate>{date}</pubDate>"
    return _rss(item, home or "https://hostile.example.org/")


_HTML = (
    b"<html><body><ul>"
    b'<li class="post"><h2><a href="http://[::1">Item with a broken link</a></h2>'
    b'<time datetime="2018-01-08">x</time></li>'
    b'<li class="post"><h2><a href="/fine">Item with a fine link</a></h2><time datetime="2018-01-09">x</time></li>'
    b"</ul></body></html>"
)
_BILLION_LAUGHS = (Path(__file__).parent / "data" / "feeds" / "entity.xml").read_bytes()
_XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<rss version="2.0"><channel><title>x</title><item><title>&xxe;</title>'
    b"<description>&xxe;</description></item></channel></rss>"
)
_QUADRATIC = (
    b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY a "'
    + b"a" * 50_000
    + b'">]>\n<rss version="2.0"><channel><title>x</title><item><title>'
    + b"&a;" * 50_000
    + b"</title></item></channel></rss>"
)


@dataclass(frozen=True)
class Payload:
    """A hostile body, how it is served, and what must become of its source."""

    id: str
    body: bytes
    content_type: str
    outcome: str  # "failed", "link" (link dropped, entry kept) or "date" (date replaced, entry kept)
    reason: str = ""  # for "failed": words the one-line reason must hold
    listing: bool = False
    counted: int = 1  # for "link" and "date": how many the report counts


PAYLOADS = [
    Payload(
        "json-nested-200000",
        _json_feed("[" + "[" * 200_000 + "]" * 200_000 + "]"),
        "application/feed+json",
        "failed",
        "nested deeper",
    ),
    Payload(
        "json-number-100000-digits",
        _json_feed('[{"id": ' + "7" * 100_000 + ', "title": "x"}]'),
        "application/feed+json",
        "failed",
        "number",
    ),
    Payload("json-url-bad-ipv6", _json_feed(_json_item(url="http://[::1")), "application/feed+json", "link"),
    Payload("html-href-bad-ipv6", _HTML, "text/html; charset=utf-8", "link", listing=True),
    # feedparser itself empties an item link it cannot resolve, so only the channel's is seen (and not counted).
    Payload(
        "feed-link-bad-ipv6",
        _rss_item(link="http://[::1", home="http://[::1"),
        "application/rss+xml",
        "link",
        counted=0,
    ),
    Payload("feed-link-port-99999", _rss_item(link="http://example.org:99999/a"), "application/rss+xml", "link"),
    Payload("date-9999-minus-2359", _rss_item(date="Fri, 31 Dec 9999 23:59:59 -2359"), "application/rss+xml", "date"),
    Payload(
        "date-0001-plus-14",
        _json_feed(_json_item(url="https://hostile.example.org/a", date_published="0001-01-01T00:00:00+14:00")),
        "application/feed+json",
        "date",
    ),
    Payload("xml-billion-laughs", _BILLION_LAUGHS, "application/xml", "failed", "entity"),
    Payload("xml-external-entity", _XXE, "application/xml", "failed", "entity"),
    Payload("xml-quadratic-blowup", _QUADRATIC, "application/xml", "failed", "entity"),
]


def _bad_source_toml(url: str, payload: Payload) -> str:
    if payload.listing:
        return (
            f'[[sources]]\nname = "{BAD}"\nkind = "listing"\nformat = "html"\nurl = "{url}"\n'
            '[sources.selectors]\nitem = "li.post"\n'
        )
    return f'[[sources]]\nname = "{BAD}"\nurl = "{url}"\n'


def _config(folder: Path, server: FeedServer, payload: Payload) -> Path:
    url = server.page(payload.id, payload.body, payload.content_type)
    text = (
        '[digest]\ntitle = "Isolation"\ntimezone = "UTC"\n\n'
        '[fetch]\ndeadline = 20\nconnect_timeout = 2\nallow_private = ["127.0.0.1"]\n\n'
        f'[[sources]]\nname = "{GOOD}"\nurl = "{server.url("feeds/rss2.xml")}"\n\n' + _bad_source_toml(url, payload)
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    # catch_exceptions=False: an exception escaping the CLI fails the test with its traceback.
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def _entries(config: Path, source: str) -> list[dict[str, Any]]:
    result = _invoke("--config", str(config), "entries", "--json", "--source", source)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _fetch_report(config: Path) -> dict[str, dict[str, Any]]:
    result = _invoke("--config", str(config), "fetch", "--json")
    return {row["source"]: row for row in json.loads(result.stdout)["sources"]}


def _check_bad_source(config: Path, payload: Payload, output: str, report: dict[str, Any]) -> None:
    """The hostile source is failed with its reason, or stored with the bad part dropped and counted."""
    bad = _entries(config, BAD)
    if payload.outcome == "failed":
        assert report["status"] == "failed"
        assert payload.reason in report["error"]
        assert "\n" not in report["error"]
        assert f"{BAD}: failed: " in output
        assert bad == []
        return
    assert report["status"] == "ok", report
    assert bad, "the entry stays, only its bad part goes"
    if payload.outcome == "link":
        assert report["dropped_links"] == payload.counted
        assert any(e["link"] is None for e in bad)
        assert all(e["link"] is None or e["link"].startswith("http://127.0.0.1") for e in bad)
        assert ("1 bad link dropped" in output) == bool(payload.counted)
    else:
        assert report["bad_dates"] == 1
        [entry] = bad
        assert entry["published"] is None and entry["first_seen"] is not None
        assert "1 date outside 1970-2100" in output


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.id)
def test_digest_fetch_isolates_each_hostile_source(payload: Payload, feed_server: FeedServer, tmp_path: Path) -> None:
    config = _config(tmp_path / "site", feed_server, payload)

    result = _invoke("--config", str(config), "fetch")

    assert "Traceback" not in result.output
    assert result.exit_code == (1 if payload.outcome == "failed" else 0), result.output
    good = _entries(config, GOOD)
    assert len(good) == 3 and all(e["source"] == GOOD for e in good)
    # Second fetch, as JSON: the same outcome (nothing new from the good feed), and the counts.
    report = _fetch_report(config)
    assert report[GOOD]["status"] == "ok" and report[GOOD]["unchanged"] == 3
    _check_bad_source(config, payload, result.output, report[BAD])
    if payload.id == "xml-external-entity":
        assert "root:" not in result.output and all("root:" not in json.dumps(e) for e in good)


def _recent_rss() -> bytes:
    """A feed whose one entry falls in the last complete week before today (the week ``digest run`` sends)."""
    today = dt.datetime.now(dt.UTC)
    monday = (today - dt.timedelta(days=today.weekday() + 7)).replace(hour=12, minute=0, second=0, microsecond=0)
    when = (monday + dt.timedelta(days=2)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    return _rss(
        "<title>Cybersecurity norms, this week</title><link>https://good.example.org/norms</link>"
        f"<guid>https://good.example.org/norms</guid><pubDate>{when}</pubDate><description>Norms.</description>"
    )


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.id)
def test_digest_run_records_the_good_source_and_sends(
    payload: Payload, feed_server: FeedServer, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    good_url = feed_server.page("recent.xml", _recent_rss(), "application/rss+xml")
    bad_url = feed_server.page(payload.id, payload.body, payload.content_type)
    extra = f'\n[[sources]]\nname = "{GOOD}"\nurl = "{good_url}"\n\n' + _bad_source_toml(bad_url, payload)
    config = ws.make_folder(tmp_path / "site", ws.rows(2), port=smtp_server.port, extra=extra)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[fetch]\n", '[fetch]\nallow_private = ["127.0.0.1"]\n', 1), encoding="utf-8")

    result = _invoke("--config", str(config), "run", env=ws.ENV)

    assert "Traceback" not in result.output
    assert result.exit_code == (1 if payload.outcome == "failed" else 0), result.output
    assert len(smtp_server.messages) == 2, result.output
    assert all(b"Cybersecurity norms, this week" in m.data for m in smtp_server.messages)
    assert len(_entries(config, GOOD)) == 1
    if payload.outcome == "failed":
        assert f"{BAD}: failed: " in result.output
    else:
        assert (f"{BAD}: notes: " in result.output) == bool(payload.counted)


# --- the isolation boundary itself, in a thread and in a worker process ---------------------------


def _broken_record_source(path: str) -> Source:
    # A text listing whose record shape lacks "date" (config refuses it; built here directly) makes
    # the real parser raise a ValueError of its own: an exception no parser meant to raise.
    return Source("odd", SourceKind.LISTING, path, ListingFormat.TEXT, record=("title", "summary"))


def test_any_exception_from_a_parse_becomes_a_failure_naming_its_type(tmp_path: Path) -> None:
    listing = tmp_path / "odd.txt"
    listing.write_text("Jan 15, 2018\nSomething happened.\n", encoding="utf-8")
    fetched = Fetched(url=str(listing), body=listing.read_bytes(), content_type="text/plain")

    outcome = parse_isolated(_broken_record_source(str(listing)), fetched, UTC, FetchSettings())

    assert type(outcome).__name__ == "ParseFailure"
    assert getattr(outcome, "reason", "").startswith("parse failed (ValueError): ")


def _gather(
    sources: list[Source], settings: FetchSettings, pool: concurrent.futures.Executor | None
) -> list[SourceResult]:
    async def run() -> list[SourceResult]:
        client = make_client(settings)
        try:
            runs = (gather_one(client, s, SourceState(), settings, UTC, pool) for s in sources)
            return list(await asyncio.gather(*runs))
        finally:
            await client.aclose()

    return asyncio.run(run())


def _pool() -> concurrent.futures.ProcessPoolExecutor:
    pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver"))
    list(pool.map(_warm, [0.3, 0.3]))  # both workers started before any deadline runs (a cold start takes ~1 s)
    return pool


def _warm(seconds: float) -> None:
    import digest.sources  # noqa: F401 - what a parse imports first

    time.sleep(seconds)


def _local(name: str, path: Path) -> Source:
    return Source(name, SourceKind.FEED, str(path))


@pytest.mark.parametrize("in_pool", [False, True], ids=["thread", "process-pool"])
def test_gather_one_isolates_in_a_thread_and_in_a_worker_process(in_pool: bool, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_bytes(PAYLOADS[0].body)
    digits = tmp_path / "digits.json"
    digits.write_bytes(PAYLOADS[1].body)
    odd = tmp_path / "odd.txt"
    odd.write_text("Jan 15, 2018\nSomething happened.\n", encoding="utf-8")
    good = Path(__file__).parent / "data" / "feeds" / "rss2.xml"
    sources = [_local("deep", deep), _local("digits", digits), _broken_record_source(str(odd)), _local("good", good)]
    pool = _pool() if in_pool else None
    try:
        results = {r.source: r for r in _gather(sources, FetchSettings(), pool)}
    finally:
        if pool is not None:
            pool.shutdown()

    assert results["good"].status is FetchStatus.OK and len(results["good"].entries) == 3
    assert results["deep"].status is FetchStatus.FAILED and "nested deeper than 64" in results["deep"].error
    assert results["digits"].status is FetchStatus.FAILED and "100000 characters" in results["digits"].error
    assert results["odd"].status is FetchStatus.FAILED
    assert results["odd"].error.startswith("parse failed (ValueError): ")


def _slow_feed(path: Path, items: int) -> Path:
    body = "".join(
        f"<item><title>Item {i}</title><link>https://slow.example.org/{i}</link>"
        f"<description>{'word ' * 40}</description></item>"
        for i in range(items)
    )
    path.write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title>{body}</channel></rss>')
    return path


@pytest.mark.parametrize("in_pool", [False, True], ids=["thread", "process-pool"])
def test_a_parse_past_the_deadline_fails_its_source_and_does_not_hold_up_the_run(in_pool: bool, tmp_path: Path) -> None:
    # Every item parsed (no max_entries cut): about a millisecond each, far past the deadline.
    # Large enough that even an idle machine cannot parse it within the deadline.
    slow = _slow_feed(tmp_path / "slow.xml", 8_000)
    good = Path(__file__).parent / "data" / "feeds" / "rss2.xml"
    settings = FetchSettings(deadline=1.0, max_entries=100_000)
    pool = _pool() if in_pool else None

    started = time.monotonic()
    try:
        results = {r.source: r for r in _gather([_local("slow", slow), _local("good", good)], settings, pool)}
    finally:
        if pool is not None:
            stop_pool(pool)  # ends the worker still parsing
    elapsed = time.monotonic() - started

    assert results["slow"].status is FetchStatus.FAILED
    assert results["slow"].error == "timed out after 1s (fetching and parsing)"
    assert results["good"].status is FetchStatus.OK
    assert elapsed < 4, f"the run waited {elapsed:.1f}s for a parse past its deadline"


# --- limits: newest entries kept, texts cut, both counted -----------------------------------------


def test_max_entries_keeps_the_newest_and_max_text_cuts_at_a_word(tmp_path: Path) -> None:
    items = ",".join(
        json.dumps(
            {
                "id": f"i{i}",
                "url": f"https://many.example.org/{i}",
                "title": f"Item {i}",
                "summary": "lorem ipsum " * (50 if i == 7 else 1),
                "date_published": (dt.datetime(2018, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=i)).isoformat(),
            }
        )
        for i in range(10)
    )
    feed = tmp_path / "many.json"
    feed.write_bytes(_json_feed("[" + items + "]"))
    settings = FetchSettings(max_entries=4, max_text=100)

    [result] = _gather([_local("many", feed)], settings, None)

    assert result.status is FetchStatus.OK
    assert [e.title for e in result.entries] == ["Item 6", "Item 7", "Item 8", "Item 9"]
    assert result.cut_entries == 6 and result.cut_texts == 1
    cut = result.entries[1].summary
    assert cut.endswith(" […]") and len(cut) <= 100 + len(" […]")
    assert cut.removesuffix(" […]").split()[-1] in ("lorem", "ipsum")


# --- the store: a failed source keeps its state; a value the store refuses fails only its source ----


def test_a_failed_source_keeps_its_state_and_counts_failures(feed_server: FeedServer, tmp_path: Path) -> None:
    config = _config(tmp_path / "site", feed_server, PAYLOADS[4])  # a bad link: the source works
    text = config.read_text(encoding="utf-8").replace("feeds/rss2.xml", "etag/feeds/rss2.xml")
    config.write_text(text, encoding="utf-8")
    assert _invoke("--config", str(config), "fetch").exit_code == 0
    with Store.open("sqlite:///" + str(tmp_path / "site" / "digest.db")) as store:
        before = store.source_states()[GOOD]
    assert before.etag and before.item_count == 3

    # The same source turns hostile twice: nothing of what it had is lost, the failures add up.
    feed_server.page("deep", PAYLOADS[0].body, "application/feed+json")
    config.write_text(text.replace("etag/feeds/rss2.xml", "mem/deep"), encoding="utf-8")
    for failures in (1, 2):
        assert _invoke("--config", str(config), "fetch").exit_code == 1
        with Store.open("sqlite:///" + str(tmp_path / "site" / "digest.db")) as store:
            after = store.source_states()[GOOD]
            assert after == SourceState(before.etag, before.last_modified, before.item_count, failures)
            assert len(store.entries(source=GOOD)) == 3


def test_a_value_the_store_cannot_take_fails_only_its_source(store: Store) -> None:
    now = dt.datetime(2018, 1, 16, tzinfo=dt.UTC)
    far = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.timezone(-dt.timedelta(hours=23, minutes=59)))
    good = SourceResult(
        "good", FetchStatus.OK, entries=(Entry("g1", "good", "Fine", published=now),), state=SourceState()
    )
    bad = SourceResult("bad", FetchStatus.OK, entries=(Entry("b1", "bad", "Far", published=far),), state=SourceState())

    lines = [_record(store, r, now) for r in (good, bad)]

    assert [line.result.status for line in lines] == [FetchStatus.OK, FetchStatus.FAILED]
    assert lines[1].result.error.startswith("could not be stored: ")
    assert [e.id for e in store.entries()] == ["g1"]
    assert store.source_states()["bad"].failures == 1


def test_a_huge_feed_is_cut_to_its_newest_items_before_feedparser_reads_it(tmp_path: Path) -> None:
    # 5,000 items, dated out of order: the 5 newest are the hours 4995..4999 wherever they stand.
    order = [(i * 7919) % 5000 for i in range(5000)]
    start = dt.datetime(2018, 1, 1, tzinfo=dt.UTC)
    body = "".join(
        f"<item><title>Item {h}</title><link>https://huge.example.org/{h}</link>"
        f"<pubDate>{(start + dt.timedelta(hours=h)).strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate></item>"
        for h in order
    )
    feed = tmp_path / "huge.xml"
    feed.write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>Huge</title>{body}</channel></rss>')

    started = time.monotonic()
    [result] = _gather([_local("huge", feed)], FetchSettings(max_entries=5), None)

    assert result.status is FetchStatus.OK
    assert sorted(e.title for e in result.entries) == [f"Item {h}" for h in range(4995, 5000)]
    assert result.cut_entries == 4995
    assert time.monotonic() - started < 3  # feedparser alone needs about 5 s for 5,000 items


def test_digest_fetch_with_enough_sources_for_worker_processes_isolates_there_too(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    hostile = {"deep": PAYLOADS[0], "digits": PAYLOADS[1], "xxe": PAYLOADS[9]}
    lines = ['[digest]\ntitle = "Pool"\ntimezone = "UTC"\n\n[fetch]\nallow_private = ["127.0.0.1"]\n']
    for name, payload in hostile.items():
        lines.append(
            f'[[sources]]\nname = "{name}"\nurl = "{feed_server.page(name, payload.body, payload.content_type)}"\n'
        )
    good = [f"good-{i:02d}" for i in range(POOL_FROM)]  # enough sources for parsing in worker processes
    for i, name in enumerate(good):
        lines.append(f'[[sources]]\nname = "{name}"\nurl = "{feed_server.url(f"feeds/rss2.xml?copy={i}")}"\n')
    config = tmp_path / "digest.toml"
    config.write_text("\n".join(lines), encoding="utf-8")

    result = _invoke("--config", str(config), "fetch", "--json")

    assert result.exit_code == 1 and "Traceback" not in result.output
    report = {row["source"]: row for row in json.loads(result.stdout)["sources"]}
    assert {name: report[name]["status"] for name in hostile} == dict.fromkeys(hostile, "failed")
    assert "nested deeper than 64" in report["deep"]["error"]
    assert all(report[name]["status"] == "ok" for name in good)
    assert report[good[0]]["new"] == 3
