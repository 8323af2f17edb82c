"""Text and HTML listings: the sample, data-driven fixtures, the author rule, broken pages."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from digest.config import FetchSettings
from digest.models import (
    Author,
    FetchStatus,
    ListingFormat,
    Selectors,
    Source,
    SourceKind,
    SourceState,
)
from digest.sources import Parsed, gather, parse_fetched
from digest.sources.dates import parse_date_line
from digest.sources.http import Fetched
from digest.sources.listing_text import is_author_line, parse_author
from digest.sources.text import derive_title
from tests.fixtures.http_server import FeedServer

LISTINGS = Path(__file__).parent / "data" / "listings"
SAMPLE = LISTINGS / "china-us-focus-cyber.txt"
SHANGHAI = ZoneInfo("Asia/Shanghai")
FAST = FetchSettings(allow_private=("127.0.0.1",), deadline=5, connect_timeout=2)


def _source_from(spec: dict[str, Any], url: str) -> Source:
    sel = spec.get("selectors")
    return Source(
        name=spec["name"],
        kind=SourceKind.LISTING,
        url=url,
        format=ListingFormat(spec["format"]),
        selectors=Selectors(**sel) if sel else None,
        date_format=spec.get("date_format"),
        record=tuple(spec.get("record", ("authors", "date", "summary"))),
    )


def _parse_local(source: Source, path: Path, tz: ZoneInfo, url: str | None = None) -> Parsed:
    ctype = "text/html" if path.suffix == ".html" else "text/plain"
    return parse_fetched(source, Fetched(url=url or str(path), body=path.read_bytes(), content_type=ctype), tz)


def _assert_no_mid_word_cut(title: str, summary: str) -> None:
    if title.endswith("…"):
        head = title[:-1]
        assert summary.startswith(head)
        assert summary[len(head)] in " ,;:", f"cut inside a word: {title!r}"
    else:
        assert summary.startswith(title)


def _fixture_pairs() -> list[tuple[Path, Path]]:
    pairs = []
    for expected in sorted(LISTINGS.glob("*.expected.json")):
        stem = expected.name.removesuffix(".expected.json")
        data = [p for p in LISTINGS.glob(stem + ".*") if p != expected]
        assert len(data) == 1, f"{expected.name} needs exactly one listing beside it"
        pairs.append((data[0], expected))
    return pairs


@pytest.mark.parametrize(("listing", "expected"), _fixture_pairs(), ids=lambda p: p.name)
def test_listing_fixture_parses_as_expected(listing: Path, expected: Path) -> None:
    spec = json.loads(expected.read_text(encoding="utf-8"))
    tz = ZoneInfo(spec.get("timezone", "UTC"))
    source = _source_from(spec["source"], str(listing))
    parsed = _parse_local(source, listing, tz, spec["source"].get("url"))
    want = spec["entries"]
    assert len(parsed.entries) == len(want)
    for got, exp in zip(parsed.entries, want, strict=True):
        for key, value in exp.items():
            actual = getattr(got, key)
            if key == "published":
                assert actual is not None and actual.utcoffset() is not None
                assert actual == dt.datetime.fromisoformat(value), got.title
                assert actual.isoformat() == value
            elif key == "authors":
                assert [{"name": a.name, "affiliation": a.affiliation} for a in actual] == value, got.title
            else:
                assert actual == value, f"{key} of {got.title!r}"
        assert got.source == source.name
        if got.title_derived:
            _assert_no_mid_word_cut(got.title, got.summary)


def _sample() -> Parsed:
    source = Source("china-us-focus", SourceKind.LISTING, str(SAMPLE), ListingFormat.TEXT)
    return _parse_local(source, SAMPLE, SHANGHAI)


def test_sample_has_ten_entries_with_dates_at_local_midnight() -> None:
    entries = _sample().entries
    assert len(entries) == 10
    days = [e.published.date().isoformat() for e in entries if e.published]
    assert days == [
        "2018-01-15", "2018-01-08", "2017-12-29", "2017-12-27", "2017-10-09",
        "2017-04-18", "2016-11-23", "2016-06-16", "2016-01-28", "2016-01-25",
    ]  # fmt: skip
    for e in entries:
        assert e.published is not None
        assert e.published.tzinfo == SHANGHAI and e.published.time() == dt.time(0, 0)


def test_sample_authors_precede_their_date() -> None:
    by_day = {e.published.date(): e for e in _sample().entries if e.published}
    assert by_day[dt.date(2018, 1, 15)].authors == ()  # the copy starts mid-entry
    assert by_day[dt.date(2018, 1, 8)].authors == (Author("Lu Chen", "Consultant, United Nations"),)
    assert by_day[dt.date(2017, 12, 29)].authors == (
        Author(
            "Lu Chuanying",
            "Fellow and Secretary-general of the Research Center for the International Governance of Cyberspace, SIIS",
        ),
    )
    assert by_day[dt.date(2017, 12, 27)].authors == (
        Author("Andrew Sheng", "Distinguished Fellow at the Asia Global Institute at the University of Hong Kong"),
        Author(
            "Xiao Geng",
            "Director of Institute of Policy and Practice at Shenzhen Finance Institute, "
            "Chinese University of Hong Kong",
        ),
    )
    assert [a.name for a in by_day[dt.date(2016, 6, 16)].authors] == ["Franz-Stefan Gady"]
    assert [a.name for a in by_day[dt.date(2016, 1, 25)].authors] == ["Rogier Creemers"]


def test_sample_summaries_are_clean_and_titles_derived() -> None:
    entries = _sample().entries
    jun16 = entries[7]
    assert jun16.summary.startswith("Franz-Stefan Gady argues that the end goal")
    assert entries[2].summary.endswith("How will China and the US manage cyberspace under Trump Era?")
    assert not any(a.name in e.summary for e in entries[1:4] for a in e.authors)
    for e in entries:
        assert e.title_derived
        # At most the limit, or a whole first sentence of up to twice the limit.
        assert 0 < len(e.title) <= 181
        assert len(e.title) <= 91 or e.summary.startswith(e.title + ".")
        _assert_no_mid_word_cut(e.title, e.summary)
    assert entries[3].title == "China’s digital economy is a force to be reckoned with"
    assert len({e.id for e in entries}) == 10


def test_same_listing_twice_gives_the_same_ids() -> None:
    assert [e.id for e in _sample().entries] == [e.id for e in _sample().entries]


@pytest.mark.parametrize(
    "line",
    [
        "Lu Chen, Consultant, United Nations",
        "Andrew Sheng, Distinguished Fellow at the Asia Global Institute at the University of Hong Kong",
        "Franz-Stefan Gady, Associate Editor, Diplomat",
        "Jane van der Berg at Acme Inc.",
        "By Jane Doe — Reuters",
        "Xiao Geng",
    ],
)
def test_author_lines(line: str) -> None:
    assert is_author_line(line)


@pytest.mark.parametrize(
    "line",
    [
        "Cybersecurity has been a complicated and thorny issue in China-US relations.",
        "How will China and the US manage cyberspace under Trump Era?",
        "Since China joined the internet in 1994, China-US cyber relations have gone through three stages",
        "The country now accounts for 42% of global e-commerce, boasts one-third of startups",
        "Read More",
        "China, the US and cyber norms",
        "This week, China's giants went to Las Vegas",
    ],
)
def test_summary_lines_are_not_author_lines(line: str) -> None:
    assert not is_author_line(line)


def test_parse_author_splits_name_and_affiliation() -> None:
    assert parse_author("Lu Chen, Consultant, United Nations") == Author("Lu Chen", "Consultant, United Nations")
    assert parse_author("Andrew Sheng, Distinguished Fellow at X") == Author(
        "Andrew Sheng", "Distinguished Fellow at X"
    )
    assert parse_author("Jane Doe at Reuters") == Author("Jane Doe", "Reuters")
    assert parse_author("By Xiao Geng") == Author("Xiao Geng", "")


def test_derive_title_rules() -> None:
    assert derive_title("Short one. Then more.") == "Short one"
    assert derive_title("Is it? Yes.") == "Is it?"
    assert derive_title("Sino-U.S. talks resume. Later text.") == "Sino-U.S. talks resume"
    long = "word " * 40
    title = derive_title(long)
    assert title.endswith("…") and len(title) <= 91 and title[:-1].split() == ["word"] * len(title[:-1].split())
    # Never cut inside a word, and no ellipsis when nothing was cut.
    assert derive_title("x" * 120) == "x" * 120
    assert derive_title("Supercalifragilistic " + "y" * 200) == "Supercalifragilistic…"


def test_a_derived_headline_is_a_whole_sentence_or_a_clause() -> None:
    # A long sentence gives its opening clause up to a colon, semicolon or dash ...
    policies = (
        "Relations in cyberspace in 2016 will be defined by three key policies: attribution, sanctions and norms."
    )
    assert derive_title(policies + " More.") == "Relations in cyberspace in 2016 will be defined by three key policies"
    dash = "The question for diplomats is how to engage China in global governance — goals the " + "word " * 20
    assert derive_title(dash) == "The question for diplomats is how to engage China in global governance"
    # ... else the whole sentence, however the limit falls, up to twice the limit.
    since = "Since China joined the internet in 1994, China-US cyber relations have gone through three stages."
    assert derive_title(since + " What next?") == since[:-1]
    # A long enough clause may end at a comma ...
    tencent = "This week, tech giants Tencent, Alibaba and Baidu took the competition to the U.S., " + "word " * 30
    assert derive_title(tencent) == "This week, tech giants Tencent, Alibaba and Baidu took the competition to the U.S."
    # ... but a list's first comma is no clause: "This week, giants Tencent" is not a headline.
    short = "This week, giants Tencent, Alibaba and Baidu took on the " + "word " * 40
    assert derive_title(short).startswith("This week, giants Tencent, Alibaba and Baidu took on the word")
    assert derive_title(short).endswith("…")
    # Hostile: no sentence end, marks in odd places, nothing but punctuation.
    assert 0 < len(derive_title(": ; — , " * 40)) <= 181
    assert derive_title("a" * 500) == "a" * 500


@pytest.mark.parametrize(
    ("line", "day"),
    [
        ("Jan 15, 2018", dt.date(2018, 1, 15)),
        ("January 15, 2018", dt.date(2018, 1, 15)),
        ("Sept. 5, 2017", dt.date(2017, 9, 5)),
        ("Monday, 15 January 2018", dt.date(2018, 1, 15)),
        ("2018-01-15", dt.date(2018, 1, 15)),
        ("Posted on Jan 15, 2018", dt.date(2018, 1, 15)),
    ],
)
def test_date_lines(line: str, day: dt.date) -> None:
    found = parse_date_line(line, SHANGHAI)
    assert found == dt.datetime.combine(day, dt.time(), tzinfo=SHANGHAI)


@pytest.mark.parametrize("line", ["In Jan 15, 2018 we met", "Jan 15", "15.01.2018", "Feb 30, 2018", ""])
def test_non_date_lines(line: str) -> None:
    assert parse_date_line(line, SHANGHAI) is None


def test_date_format_overrides_the_common_forms() -> None:
    assert parse_date_line("15.01.2018", SHANGHAI, "%d.%m.%Y") == dt.datetime(2018, 1, 15, tzinfo=SHANGHAI)
    assert parse_date_line("Jan 15, 2018", SHANGHAI, "%d.%m.%Y") is None


def _html_source(url: str, item: str = ".news li") -> Source:
    return Source("rel", SourceKind.LISTING, url, ListingFormat.HTML, selectors=Selectors(item=item))


def test_html_listing_served_resolves_relative_links_and_defaults(feed_server: FeedServer) -> None:
    [res] = gather([_html_source(feed_server.url("listings/relative.html"))], {}, FAST, SHANGHAI)
    assert res.status is FetchStatus.OK, res.error
    titles = [e.title for e in res.entries]
    assert titles == ["First item", "Second item", "Third item"]
    first, second, third = res.entries
    assert first.link == feed_server.url("listings/items/one.html")
    assert second.link == feed_server.url("two.html")
    assert third.link is None  # javascript: links are dropped
    assert first.published == dt.datetime(2018, 1, 15, 9, 0, tzinfo=SHANGHAI)
    assert second.published == dt.datetime(2018, 1, 14, tzinfo=SHANGHAI)
    assert first.summary == "One."
    assert res.state is not None and res.state.item_count == 3


def test_html_listing_matching_nothing_is_broken(feed_server: FeedServer) -> None:
    source = _html_source(feed_server.url("listings/relative.html"), item="article.story")
    old = SourceState(etag=None, item_count=3)
    [res] = gather([source], {"rel": old}, FAST, SHANGHAI)
    assert res.status is FetchStatus.BROKEN
    assert "matched no items" in res.error and "article.story" in res.error
    assert res.state is None and res.entries == ()


def test_html_listing_with_far_fewer_items_than_last_time_is_broken(feed_server: FeedServer) -> None:
    source = _html_source(feed_server.url("listings/relative.html"))
    [res] = gather([source], {"rel": SourceState(item_count=10)}, FAST, SHANGHAI)
    assert res.status is FetchStatus.BROKEN
    assert "3 items, far fewer than 10 last time" in res.error
    assert res.state is None
    # Within the ratio it is fine, and the new count is recorded.
    [ok] = gather([source], {"rel": SourceState(item_count=5)}, FAST, SHANGHAI)
    assert ok.status is FetchStatus.OK and ok.state is not None and ok.state.item_count == 3


def test_text_listing_without_dates_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("No dates here.\nJust prose.\n", encoding="utf-8")
    source = Source("t", SourceKind.LISTING, str(path), ListingFormat.TEXT)
    [res] = gather([source], {}, FAST, SHANGHAI)
    assert res.status is FetchStatus.BROKEN and "no dated entries" in res.error


def test_html_listing_honours_base_href_and_date_format(feed_server: FeedServer) -> None:
    sel = Selectors(item=".post", title=".t", link="a", date=".d", summary=".s", author=".by")
    source = Source(
        "tt", SourceKind.LISTING, feed_server.url("listings/think-tank.html"), ListingFormat.HTML,
        selectors=sel, date_format="%d/%m/%Y",
    )  # fmt: skip
    [res] = gather([source], {}, FAST, SHANGHAI)
    assert res.status is FetchStatus.OK, res.error
    assert [e.link for e in res.entries] == [
        "https://thinktank.example.org/analysis/cyber-norms",
        "https://thinktank.example.org/2018/ai-race?utm_campaign=x&id=7#top",
        "https://other.example.com/x",
    ]
    assert res.entries[0].published == dt.datetime(2016, 1, 25, tzinfo=SHANGHAI)
