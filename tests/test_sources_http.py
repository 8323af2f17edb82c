"""The fetcher against a real loopback server: 304, redirects, deadlines, byte caps, errors."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.config import FetchSettings
from digest.models import FetchStatus, Source, SourceKind, SourceResult, SourceState
from digest.sources import gather
from tests.fixtures.http_server import LAST_MODIFIED, FeedServer

UTC = ZoneInfo("UTC")
FAST = FetchSettings(allow_private=("127.0.0.1",), deadline=5, connect_timeout=2, user_agent="digest-test/9")


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
    res = _one(
        _feed(feed_server.url("redirect/3/feeds/rss2.xml")),
        FetchSettings(allow_private=("127.0.0.1",), max_redirects=3, deadline=5),
    )
    assert res.status is FetchStatus.OK, res.error
    assert len(feed_server.requests) == 4
    # Links resolve against where the feed finally came from.
    assert res.entries[1].link == feed_server.url("2018/01/norms")


def test_redirects_over_the_limit_fail(feed_server: FeedServer) -> None:
    res = _one(
        _feed(feed_server.url("redirect/4/feeds/rss2.xml")),
        FetchSettings(allow_private=("127.0.0.1",), max_redirects=3, deadline=5),
    )
    assert res.status is FetchStatus.FAILED
    assert res.error == "too many redirects (more than 3)"
    assert len(feed_server.requests) == 4
    assert res.state is None


def test_redirect_to_another_scheme_is_refused(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("redirect-to?url=" + quote("file:///etc/passwd", safe=""))))
    assert res.status is FetchStatus.FAILED
    assert "non-http(s)" in res.error and "file:///etc/passwd" in res.error


def test_slow_body_hits_the_total_deadline(feed_server: FeedServer) -> None:
    res = _one(
        _feed(feed_server.url("slow/feeds/rss2.xml")),
        FetchSettings(allow_private=("127.0.0.1",), deadline=1, connect_timeout=1),
    )
    assert res.status is FetchStatus.FAILED
    assert res.error == "timed out after 1s"


@pytest.mark.parametrize("path", ["huge", "huge/declared"])
def test_oversized_body_hits_the_byte_cap(feed_server: FeedServer, path: str) -> None:
    res = _one(_feed(feed_server.url(path)), FetchSettings(allow_private=("127.0.0.1",), max_bytes=100_000, deadline=5))
    assert res.status is FetchStatus.FAILED
    assert res.error == "body over 100000 bytes"


def test_gzip_body_is_decoded(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("gzip/feeds/atom.xml")))
    assert res.status is FetchStatus.OK, res.error
    assert [e.title for e in res.entries] == ["Deterrence in cyberspace", "Only updated"]


def test_gzip_bomb_is_capped_after_decompression(feed_server: FeedServer) -> None:
    res = _one(
        _feed(feed_server.url("gzip-bomb/20")),
        FetchSettings(allow_private=("127.0.0.1",), max_bytes=1_000_000, deadline=5),
    )
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


# --- the private-address guard, end to end ---------------------------------------------
# The guard itself (policy, literal forms, rebinding, TLS names) is tested in test_sources_netguard.py.

LOOPBACK_ONLY = FetchSettings(allow_private=("127.0.0.1",), deadline=5, connect_timeout=2)


def _redirect_to(feed_server: FeedServer, url: str) -> str:
    return feed_server.url("redirect-to?url=" + quote(url, safe=""))


def _fetch_config(tmp_path: Path, sources: dict[str, str], allow_private: list[str]) -> Path:
    blocks = "".join(f'[[sources]]\nname = "{name}"\nurl = "{url}"\n\n' for name, url in sources.items())
    text = (
        '[digest]\ntimezone = "UTC"\n\n'
        f"[fetch]\ndeadline = 5\nconnect_timeout = 2\nallow_private = {json.dumps(allow_private)}\n\n{blocks}"
    )
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def test_redirect_into_the_private_network_is_refused_and_nothing_of_it_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feed_server: FeedServer, private_server: FeedServer
) -> None:
    monkeypatch.chdir(tmp_path)
    admin = private_server.url("private/admin.xml")
    config = _fetch_config(
        tmp_path,
        {"Good": feed_server.url("feeds/rss2.xml"), "Evil": _redirect_to(feed_server, admin)},
        ["127.0.0.1"],
    )

    fetched = _cli(config, "fetch")

    assert fetched.exit_code == 1, fetched.output
    assert "Evil: failed: refused: redirect to a private address (127.0.0.2)" in fetched.stdout.splitlines()
    assert "3 new entries from 2 sources; 1 failed" in fetched.stdout
    listed = _cli(config, "entries", "--json")
    stored = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {e["source"] for e in stored} == {"Good"} and len(stored) == 3
    assert not any("admin" in e["title"].lower() or "hunter2" in e["summary"] for e in stored)
    # The feed server answered the redirect; nobody ever connected to 127.0.0.2.
    assert feed_server.requests_for("/redirect-to")
    assert private_server.connections == [] and private_server.requests == []


def test_redirect_to_a_trusted_private_address_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feed_server: FeedServer, private_server: FeedServer
) -> None:
    monkeypatch.chdir(tmp_path)
    admin = private_server.url("private/admin.xml")
    config = _fetch_config(tmp_path, {"Intranet": _redirect_to(feed_server, admin)}, ["127.0.0.1", "127.0.0.2/32"])

    fetched = _cli(config, "fetch")

    assert fetched.exit_code == 0, fetched.output
    [entry] = [json.loads(line) for line in _cli(config, "entries", "--json").stdout.splitlines()]
    assert entry["title"] == "Admin password reset"
    assert [r.path for r in private_server.requests] == ["/private/admin.xml"]


def test_first_request_to_a_private_address_is_refused(private_server: FeedServer) -> None:
    res = _one(_feed(private_server.url("private/admin.xml")), LOOPBACK_ONLY)
    assert res.status is FetchStatus.FAILED
    assert res.error == "refused: private address (127.0.0.2)"
    assert res.state is None and res.entries == ()
    assert private_server.connections == []


def test_private_address_of_a_later_hop_says_redirect(feed_server: FeedServer, private_server: FeedServer) -> None:
    # Two good hops on 127.0.0.1, then one into 127.0.0.2.
    inner = _redirect_to(feed_server, private_server.url("private/admin.xml"))
    res = _one(_feed(_redirect_to(feed_server, inner)), LOOPBACK_ONLY)
    assert res.error == "refused: redirect to a private address (127.0.0.2)"
    assert len(feed_server.requests_for("/redirect-to")) == 2 and private_server.connections == []


@pytest.mark.parametrize(
    ("target", "address"),
    [
        ("http://127.0.0.1:{port}/feeds/rss2.xml", "127.0.0.1"),
        ("http://localhost:{port}/feeds/rss2.xml", "127.0.0.1"),
        ("http://2130706433:{port}/feeds/rss2.xml", "127.0.0.1"),
        ("http://0x7f.1:{port}/feeds/rss2.xml", "127.0.0.1"),
        ("http://017700000001:{port}/feeds/rss2.xml", "127.0.0.1"),
        ("http://127.1:{port}/feeds/rss2.xml", "127.0.0.1"),
        ("http://0.0.0.0:{port}/feeds/rss2.xml", "0.0.0.0"),  # Linux connects 0.0.0.0 to loopback
        ("http://[::ffff:127.0.0.1]:{port}/feeds/rss2.xml", "::ffff:127.0.0.1"),
    ],
)
def test_direct_loopback_urls_are_refused_before_connecting(feed_server: FeedServer, target: str, address: str) -> None:
    """Without the guard each of these would reach the feed server; with it, not one connection."""
    port = feed_server.base.rsplit(":", 1)[1]
    res = _one(_feed(target.format(port=port)), FetchSettings(deadline=5, connect_timeout=2))
    assert res.status is FetchStatus.FAILED
    assert res.error == f"refused: private address ({address})"
    assert feed_server.connections == []
    # Trusted, the same URL reaches the server: what refused it above was the guard.
    trusting = FetchSettings(allow_private=(address,), deadline=5, connect_timeout=2)
    allowed = _one(_feed(target.format(port=port)), trusting)
    assert allowed.status is FetchStatus.OK, allowed.error
    assert len(feed_server.connections) == 1


def test_ipv6_loopback_is_refused_before_connecting(ipv6_server: FeedServer) -> None:
    res = _one(_feed(ipv6_server.url("feeds/rss2.xml")), LOOPBACK_ONLY)
    assert res.error == "refused: private address (::1)"
    assert ipv6_server.connections == []
    # Trusted, the same server is reached: the refusal above was the guard, not a dead socket.
    allowed = _one(_feed(ipv6_server.url("feeds/rss2.xml")), FetchSettings(allow_private=("::1",), deadline=5))
    assert allowed.status is FetchStatus.OK, allowed.error
    assert ipv6_server.connections == ["::1"]


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://10.0.0.1/feed.xml", "10.0.0.1"),
        ("http://192.168.1.1/feed.xml", "192.168.1.1"),
        ("http://172.16.0.1/feed.xml", "172.16.0.1"),
        ("http://100.64.0.1/feed.xml", "100.64.0.1"),
        ("http://[fd00::1]/feed.xml", "fd00::1"),
        ("http://[fe80::1]/feed.xml", "fe80::1"),
        ("http://[::ffff:169.254.169.254]/feed.xml", "::ffff:169.254.169.254"),
        ("http://[64:ff9b::a00:1]/feed.xml", "64:ff9b::a00:1"),
        ("http://2852039166/latest/meta-data/", "169.254.169.254"),
        ("http://224.0.0.1/feed.xml", "224.0.0.1"),
    ],
)
def test_private_networks_are_refused_without_sending_a_packet(url: str, address: str) -> None:
    # Nothing listens there (and nothing may be sent off loopback): only an answer from the guard
    # can be this fast and this exact. A real attempt would take the connect timeout or fail otherwise.
    settings = FetchSettings(deadline=30, connect_timeout=20, allow_private=("127.0.0.1",))
    started = time.monotonic()
    res = _one(_feed(url), settings)
    assert res.error == f"refused: private address ({address})"
    assert time.monotonic() - started < 1.0


def test_trusted_cidr_lets_a_private_address_through(feed_server: FeedServer) -> None:
    res = _one(_feed(feed_server.url("feeds/rss2.xml")), FetchSettings(allow_private=("127.0.0.0/8",), deadline=5))
    assert res.status is FetchStatus.OK, res.error
    assert feed_server.connections == ["127.0.0.1"]


def test_local_files_need_no_trust(data_dir: Path) -> None:
    res = _one(_feed(str(data_dir / "private" / "admin.xml")), FetchSettings())
    assert res.status is FetchStatus.OK and [e.title for e in res.entries] == ["Admin password reset"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "FILE:/etc/passwd", "/etc/passwd?x=file://"])
def test_a_redirect_never_leads_to_a_file(feed_server: FeedServer, location: str) -> None:
    res = _one(_feed(_redirect_to(feed_server, location)), LOOPBACK_ONLY)
    assert res.status is FetchStatus.FAILED
    if location.startswith("/"):  # relative: an http URL on the same server, which has no such file
        assert res.error == "HTTP 404 Not Found"
    else:
        assert res.error == f"redirect to a non-http(s) URL refused: {location!r}"


def test_proxy_variables_are_not_used(
    monkeypatch: pytest.MonkeyPatch, private_server: FeedServer, ipv6_server: FeedServer
) -> None:
    # Through a proxy the guard could not see where a connection goes: the fetcher connects itself.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, ipv6_server.base)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    res = _one(_feed(private_server.url("feeds/rss2.xml")), FetchSettings(allow_private=("127.0.0.2",), deadline=5))
    assert res.status is FetchStatus.OK, res.error
    assert len(private_server.connections) == 1
    assert ipv6_server.connections == []


def test_304s_redirects_and_error_pages_leave_their_connection_for_the_next_request(
    keepalive_server: FeedServer,
) -> None:
    server = keepalive_server
    first = _one(_feed(server.url("etag/feeds/rss2.xml")))
    assert first.state is not None and first.state.etag
    server.clear()
    names = ["304 a", "redirect", "404", "304 b", "304 c"]
    paths = ["etag/feeds/rss2.xml", "redirect/1/feeds/atom.xml", "status/404"] + ["etag/feeds/rss2.xml"] * 2
    sources = [_feed(server.url(p), n) for n, p in zip(names, paths, strict=True)]
    states = {n: first.state for n in names if n.startswith("304")}
    one_at_a_time = FetchSettings(allow_private=("127.0.0.1",), deadline=5, connect_timeout=2, concurrency=1)

    results = gather(sources, states, one_at_a_time, UTC)

    nm, ok, failed = FetchStatus.NOT_MODIFIED, FetchStatus.OK, FetchStatus.FAILED
    assert [r.status for r in results] == [nm, ok, failed, nm, nm]
    assert len(server.requests) == 6  # the redirect is two
    assert server.connections == ["127.0.0.1"]  # one connection for all six


def test_an_error_page_too_long_to_read_through_costs_its_connection_only(keepalive_server: FeedServer) -> None:
    server = keepalive_server
    sources = [_feed(server.url("status/500/1024"), "huge error"), _feed(server.url("feeds/rss2.xml"))]
    one_at_a_time = FetchSettings(allow_private=("127.0.0.1",), deadline=5, connect_timeout=2, concurrency=1)

    bad, good = gather(sources, {}, one_at_a_time, UTC)

    assert bad.status is FetchStatus.FAILED and bad.error == "HTTP 500 Internal Server Error"
    assert good.status is FetchStatus.OK and len(good.entries) == 3
    assert len(server.connections) == 2  # the 1 MB page was not read through: its connection was closed
