"""Feeds: RSS 0.91/1.0/2.0, Atom, JSON Feed; charsets; refusals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.config import FetchSettings
from digest.errors import ParseError
from digest.models import Author, Entry, FetchStatus, Source, SourceKind, SourceResult
from digest.sources import gather
from digest.sources.feed import parse_feed
from tests.fixtures.http_server import FeedServer

SHANGHAI = ZoneInfo("Asia/Shanghai")
FAST = FetchSettings(allow_private=("127.0.0.1",), deadline=5, connect_timeout=2)
FEEDS = Path(__file__).parent / "data" / "feeds"


def _fetch(feed_server: FeedServer, path: str, name: str = "feed") -> SourceResult:
    [res] = gather([Source(name, SourceKind.FEED, feed_server.url(path))], {}, FAST, SHANGHAI)
    return res


def _entries(feed_server: FeedServer, path: str) -> tuple[Entry, ...]:
    res = _fetch(feed_server, path)
    assert res.status is FetchStatus.OK, res.error
    return res.entries


def _parse_file(name: str, content_type: str = "") -> list[Entry]:
    path = FEEDS / name
    return parse_feed(Source("f", SourceKind.FEED, str(path)), path.read_bytes(), content_type, str(path), SHANGHAI)


def test_rss2(feed_server: FeedServer) -> None:
    first, second, third = _entries(feed_server, "feeds/rss2.xml")
    assert first.title == "China’s cyber café rules"  # entity decoded, HTML stripped
    assert first.link == "https://review.example.org/2018/01/cafe-rules?utm_source=rss&utm_medium=feed"
    assert first.id == "https://review.example.org/2018/01/cafe-rules"
    assert first.summary == "New rules for internet cafés. Second paragraph."
    assert first.content == "<p>New rules for internet cafés.</p><p>Full <em>text</em> here.</p>"
    assert first.authors == (Author("Lu Chen"),)
    assert first.tags == ("Regulation", "China")
    assert first.published == dt.datetime(2018, 1, 15, 9, 30, tzinfo=dt.UTC)
    assert not first.title_derived
    # A relative link resolves against the feed's URL; a guid that is no URL is namespaced.
    assert second.link == feed_server.url("2018/01/norms")
    assert second.id == "feed:guid:review-2018-0042"
    # A date without a zone is read in the configured time zone.
    assert second.published == dt.datetime(2018, 1, 10, 8, 0, tzinfo=SHANGHAI)
    # No guid: the canonical link (fragment dropped) is the id.
    assert third.id == "https://review.example.org/2018/01/sanctions"
    assert third.link == "https://review.example.org/2018/01/sanctions#comments"


def test_rss1_rdf(feed_server: FeedServer) -> None:
    a, b = _entries(feed_server, "feeds/rss1.rdf")
    assert (a.title, a.link, a.summary) == (
        "First RDF item",
        "https://rdf.example.org/a",
        "About the first item.",
    )
    assert a.published == dt.datetime(2018, 1, 12, 9, 0, tzinfo=dt.UTC)
    assert a.authors == (Author("Rogier Creemers"),) and a.tags == ("Governance",)
    assert b.published == dt.datetime(2018, 1, 11, tzinfo=SHANGHAI)


def test_rss091(feed_server: FeedServer) -> None:
    [e] = _entries(feed_server, "feeds/rss091.xml")
    assert (e.title, e.link, e.summary, e.published) == (
        "Old item",
        "http://old.example.org/item1",
        "Still works.",
        None,
    )


def test_atom(feed_server: FeedServer) -> None:
    first, second = _entries(feed_server, "feeds/atom.xml")
    assert first.title == "Deterrence in cyberspace"
    assert first.link == "https://atom.example.org/blog/posts/deterrence"  # xml:base
    assert first.id == "feed:guid:tag:atom.example.org,2018:deterrence"
    assert first.authors == (Author("Andrew Sheng"), Author("Xiao Geng"))
    assert first.summary == "A short summary."
    assert 'href="https://atom.example.org/about"' in first.content
    assert first.published == dt.datetime(2018, 1, 14, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert first.tags == ("Security",)
    # Entries without authors inherit the feed's; updated stands in for published.
    assert second.authors == (Author("Franz-Stefan Gady"),)
    assert second.published == dt.datetime(2018, 1, 13, 10, 0, tzinfo=dt.UTC)
    assert second.content == "Text content &amp; nothing else."
    assert second.summary == "Text content & nothing else."


def test_json_feed(feed_server: FeedServer) -> None:
    first, second = _entries(feed_server, "feeds/jsonfeed.json")
    assert first.title == "Second post" and first.summary == "Hello world."
    assert first.id == "feed:guid:2"
    assert first.authors == (Author("Zhao Weibin"),) and first.tags == ("AI", "Policy")
    assert first.published == dt.datetime(2018, 1, 14, 15, 0, tzinfo=dt.UTC)
    assert second.title == "A post without a title" and second.title_derived
    assert second.link == feed_server.url("first")
    assert second.id == "https://json.example.org/first"
    assert second.authors == (Author("Feed Author"),)
    assert second.published == dt.datetime(2018, 1, 10, 10, 0, tzinfo=SHANGHAI)
    assert second.content == "A post without a title. It has two sentences."


def test_untitled_items_get_derived_titles_and_distinct_ids() -> None:
    a, b = _parse_file("notitle.xml")
    assert a.title_derived and b.title_derived
    # The whole first sentence (150 characters, under twice the limit): never half of it.
    assert a.title == (
        "The key to which country currently takes the lead in the global tussle in AI and other technological"
        " forefronts can be boiled down to some fundamentals"
    )
    assert b.title == "How will China and the US manage cyberspace?"
    # Both carry guid "1": not trusted, so content hashes, namespaced by source.
    assert a.id.startswith("f:sha256:") and b.id.startswith("f:sha256:") and a.id != b.id


def test_header_says_utf8_but_body_is_latin1(feed_server: FeedServer) -> None:
    [e] = _entries(feed_server, "charset/utf-8/feeds/latin1.xml")
    assert e.title == "Résumé of the naïve café"
    assert e.summary == "Crème brûlée, £ 5"


def test_header_says_latin1_but_body_is_utf8(feed_server: FeedServer) -> None:
    entries = _entries(feed_server, "charset/iso-8859-1/feeds/rss2.xml")
    assert entries[0].title == "China’s cyber café rules"


def test_no_charset_anywhere_still_reads_latin1(feed_server: FeedServer) -> None:
    [e] = _entries(feed_server, "charset/none/feeds/latin1.xml")
    assert e.title == "Résumé of the naïve café"


def test_entity_declarations_are_refused(feed_server: FeedServer) -> None:
    res = _fetch(feed_server, "feeds/entity.xml")
    assert res.status is FetchStatus.FAILED
    assert res.error == "XML entity declarations are refused"


def test_entity_declarations_are_refused_in_utf16() -> None:
    body = (FEEDS / "entity.xml").read_text(encoding="utf-8").encode("utf-16")
    with pytest.raises(ParseError, match="XML entity declarations are refused"):
        parse_feed(Source("f", SourceKind.FEED, "x"), body, "", "https://x.example/", SHANGHAI)


def test_html_page_is_not_a_feed(feed_server: FeedServer) -> None:
    res = _fetch(feed_server, "feeds/notafeed.html")
    assert res.status is FetchStatus.FAILED
    assert res.error.startswith("not a feed: got an HTML page")


def test_truncated_feed_is_malformed() -> None:
    with pytest.raises(ParseError, match=r"^f: malformed feed: "):
        _parse_file("truncated.xml")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not a feed: invalid JSON"),
        (b'{"title": "x", "items": []}', "not a feed: JSON without a jsonfeed.org version"),
        (b"plain words, no markup", "not a feed"),
        (b"", "not a feed"),
    ],
)
def test_garbage_is_not_a_feed(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed(Source("f", SourceKind.FEED, "x"), body, "", "https://x.example/", SHANGHAI)
    assert info.value.reason.startswith(reason)
    assert "\n" not in info.value.reason


def test_a_feed_body_is_never_taken_for_a_path(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_text('<rss version="2.0"><channel><item><title>leak</title></item></channel></rss>')
    with pytest.raises(ParseError):
        parse_feed(Source("f", SourceKind.FEED, "x"), str(secret).encode(), "", "https://x.example/", SHANGHAI)


def test_same_feed_twice_gives_identical_ids(feed_server: FeedServer) -> None:
    for path in ("feeds/rss2.xml", "feeds/atom.xml", "feeds/jsonfeed.json", "feeds/notitle.xml"):
        once = [e.id for e in _entries(feed_server, path)]
        again = [e.id for e in _entries(feed_server, path)]
        assert once == again and len(set(once)) == len(once)
