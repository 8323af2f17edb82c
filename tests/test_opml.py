"""OPML reading (hostile files beside good ones) and writing, and the round trip."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from digest.errors import ConfigError
from digest.opml import MAX_BYTES, Outline, read_opml, write_opml

DATA = Path(__file__).parent / "data" / "opml"
NOW = dt.datetime(2018, 1, 15, 8, 0, tzinfo=dt.UTC)


def test_an_rss2email_export_gives_its_three_feeds() -> None:
    read = read_opml((DATA / "rss2email.opml").read_bytes(), "rss2email.opml")
    assert [o.url for o in read.outlines] == [
        "https://krebsonsecurity.com/feed/",
        "https://www.schneier.com/feed/atom/",
        "https://feeds.feedburner.com/TheHackersNews",
    ]
    assert read.problems == ()


def test_folders_become_categories_and_bad_outlines_are_skipped_by_position() -> None:
    read = read_opml((DATA / "reader.opml").read_bytes(), "reader.opml")
    assert [(o.title, o.category) for o in read.outlines] == [
        ("Krebs on Security", "Security"),
        ("AI Watch", "AI & Policy"),
    ]
    assert read.outlines[0].html_url == "https://krebsonsecurity.com/"
    assert len(read.problems) == 2
    assert read.problems[0].startswith("reader.opml: outline 3 ('Broken one')")
    assert "outline 4 ('Not web')" in read.problems[1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaa">]><opml><body/></opml>', "DOCTYPE or entity"),
        (b'<!DOCTYPE opml SYSTEM "file:///etc/passwd"><opml><body/></opml>', "DOCTYPE or entity"),
        (b"<opml><body><outline", "not well-formed XML"),
        (b"<rss><channel/></rss>", "root element is not <opml>"),
        (b"<opml><head/></opml>", "no <body> element"),
        (b"", "not well-formed XML"),
    ],
)
def test_a_file_that_is_not_safe_opml_is_one_config_error(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        read_opml(data, "feeds.opml")
    assert str(info.value).startswith("feeds.opml: ")
    assert "\n" not in str(info.value)


def test_a_huge_file_is_refused_before_parsing() -> None:
    with pytest.raises(ConfigError, match="over"):
        read_opml(b"<opml><body>" + b" " * MAX_BYTES + b"</body></opml>", "big.opml")


def test_deep_nesting_is_walked_without_recursion() -> None:
    depth = 5000
    data = (
        b"<opml><body>"
        + b'<outline text="f">' * depth
        + b'<outline xmlUrl="https://deep.example.org/feed" text="Deep"/>'
        + b"</outline>" * depth
        + b"</body></opml>"
    )
    try:
        read = read_opml(data, "deep.opml")
    except ConfigError as exc:  # lxml refuses very deep trees itself: then it is one clean error
        assert "deep.opml" in str(exc)
    else:
        assert [o.url for o in read.outlines] == ["https://deep.example.org/feed"]


def test_write_then_read_gives_the_same_outlines() -> None:
    outlines = [
        Outline(title='Krebs "on" <Security>', url="https://krebsonsecurity.com/feed/?a=1&b=2", category="Sec & Co"),
        Outline(title="AI Watch", url="https://ai.example.org/atom.xml"),
    ]
    text = write_opml("Cyber & Weekly", outlines, NOW)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">')
    assert "<dateCreated>Mon, 15 Jan 2018 08:00:00 +0000</dateCreated>" in text
    read = read_opml(text.encode(), "round.opml")
    assert read.outlines == tuple(outlines)
