"""The fetcher against a real loopback server: 304, redirects, deadlines, byte caps, errors."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest

from digest.config import FetchSettings
from digest.models import FetchStatus, Source, SourceKind, SourceResult, SourceState
from digest.sources import gather
from tests.fixtures.http_server import LAST_MODIFIED, FeedServer

UTC = ZoneInfo("UTC")
FAST = FetchSettings(deadline=5, connect_timeout=2, user_agent="digest-test/9")


def _feed(url: str, name: str = "feed") -> Source:
    return Source(name, SourceKind.FEED, url)


def _one(source: Source, settings: FetchSettings = FAST, state: SourceState | None = None) -> SourceResult:
    [res] = gather([source], {source.name: state} if state else {}, settings, UTC)
    return res


def test_plain_fetch_sends_user_agent_and_parses(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("feeds/rss2.xml")))
    assert res.status is FetchStatus.OK, res.error
    assert len(res.entries) == 3
    [req] = feed_server.requests
    assert req.headers["user-agent"] == "digest-test/9"
    assert "if-none-match" not in req.headers


def test_etag_then_304_keeps_state_and_yields_nothing(feed_server: FeedServer) -> None:
    source = _feed(feed_server.url("etag/feeds/rss2.xml"))
    first = _one(source)
    assert first.status is FetchStatus.OK and len(first.entries) == 3
    assert first.state is not None and first.state.etag and first.state.last_modified == LAST_MODIFIED
    second = _one(source, state=first.state)
    assert second.status is FetchStatus.NOT_MODIFIED
    assert second.entries == ()
    assert second.state is first.state
    sent = feed_server.requests_for("/etag/")[-1].headers
    assert sent["if-none-match"] == first.state.etag
    assert sent["if-modified-since"] == LAST_MODIFIED


def test_last_modified_alone_also_gets_304(feed_server: FeedServer) -> None:
    state = SourceState(last_modified=LAST_MODIFIED)
    res = _one(_feed(feed_server.url("etag/feeds/atom.xml")), state=state)
    assert res.status is FetchStatus.NOT_MODIFIED and res.state == state


def test_stale_etag_gets_the_body_and_the_new_etag(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("etag/feeds/rss2.xml")), state=SourceState(etag='"old"'))
    assert res.status is FetchStatus.OK and len(res.entries) == 3
    assert res.state is not None and res.state.etag not in (None, '"old"')


def test_redirects_within_the_limit_are_followed(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("redirect/3/feeds/rss2.xml")), FetchSettings(max_redirects=3, deadline=5))
    assert res.status is FetchStatus.OK, res.error
    assert len(feed_server.requests) == 4
    # Links resolve against where the feed finally came from.
    assert res.entries[1].link == feed_server.url("2018/01/norms")


def test_redirects_over_the_limit_fail(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("redirect/4/feeds/rss2.xml")), FetchSettings(max_redirects=3, deadline=5))
    assert res.status is FetchStatus.FAILED
    assert res.error == "too many redirects (more than 3)"
    assert len(feed_server.requests) == 4
    assert res.state is None


def test_redirect_to_another_scheme_is_refused(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("redirect-to?url=" + quote("file:///etc/passwd", safe=""))))
    assert res.status is FetchStatus.FAILED
    assert "non-http(s)" in res.error and "file:///etc/passwd" in res.error


def test_slow_body_hits_the_total_deadline(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("slow/feeds/rss2.xml")), FetchSettings(deadline=1, connect_timeout=1))
    assert res.status is FetchStatus.FAILED
    assert res.error == "timed out after 1s"


@pytest.mark.parametrize("path", ["huge", "huge/declared"])
def test_oversized_body_hits_the_byte_cap(feed_server: FeedServer, path: str) -> None:
    res = _one(_feed(feed_server.url(path)), FetchSettings(max_bytes=100_000, deadline=5))
    assert res.status is FetchStatus.FAILED
    assert res.error == "body over 100000 bytes"


def test_gzip_body_is_decoded(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("gzip/feeds/atom.xml")))
    assert res.status is FetchStatus.OK, res.error
    assert [e.title for e in res.entries] == ["Deterrence in cyberspace", "Only updated"]


def test_gzip_bomb_is_capped_after_decompression(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("gzip-bomb/20")), FetchSettings(max_bytes=1_000_000, deadline=5))
    assert res.status is FetchStatus.FAILED
    assert res.error == "body over 1000000 bytes"
    # The compressed bytes were well under the cap: only the decompressed size could trip it.
    assert len(feed_server.bombs[20]) < 1_000_000


@pytest.mark.parametrize(("code", "error"), [(500, "HTTP 500 Internal Server Error"), (404, "HTTP 404 Not Found")])
def test_error_status_is_reported(feed_server: FeedServer, code: int, error: str) -> None:
    res = _one(_feed(feed_server.url(f"status/{code}")))
    assert res.status is FetchStatus.FAILED
    assert res.error == error
    assert res.entries == () and res.state is None


def test_connection_refused_is_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _one(_feed(f"http://127.0.0.1:{port}/feed.xml"))
    assert res.status is FetchStatus.FAILED
    assert res.error.startswith("could not connect")
    assert "\n" not in res.error


def test_local_file_is_read(data_dir: Path) -> None:
    res = _one(_feed(str(data_dir / "feeds" / "rss1.rdf")))
    assert res.status is FetchStatus.OK and len(res.entries) == 2


def test_missing_local_file_is_a_clear_error(tmp_path: Path) -> None:
    res = _one(_feed(str(tmp_path / "nope.xml")))
    assert res.status is FetchStatus.FAILED
    assert res.error == f"no such file: {tmp_path / 'nope.xml'}"


def test_local_file_over_the_cap_is_refused(data_dir: Path) -> None:
    res = _one(_feed(str(data_dir / "feeds" / "rss2.xml")), FetchSettings(max_bytes=500))
    assert res.status is FetchStatus.FAILED and res.error == "body over 500 bytes"


def test_invalid_url_is_reported() -> None:
    res = _one(_feed("http://127.0.0.1:99999/feed.xml"))
    assert res.status is FetchStatus.FAILED and res.error.startswith("invalid URL")


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/feed.xml", "relative/feed.xml"])
def test_only_http_and_absolute_paths(url: str) -> None:
    res = _one(_feed(url))
    assert res.status is FetchStatus.FAILED
    assert "only http(s) URLs or absolute paths" in res.error
