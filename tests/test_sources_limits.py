"""Limits on one source's parse: texts cut at a word (never inside a tag), dates kept within 1970–2100."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from digest.sources.dates import in_range, parse_date, read_date
from digest.sources.limits import CUT_NOTE, Tally, cap_text

UTC = ZoneInfo("UTC")


def test_cap_text_cuts_at_a_word_with_a_note() -> None:
    text = "alpha beta gamma delta epsilon"
    assert cap_text(text, 100) == text
    assert cap_text(text, 13) == "alpha beta" + CUT_NOTE


def test_cap_text_never_cuts_inside_a_tag() -> None:
    html = '<p>one two <a href="https://example.org/a-very-long-link-that-runs-past-the-cut">three</a></p>'
    cut = cap_text(html, 40, markup=True)
    assert cut == "<p>one two" + CUT_NOTE
    assert "<a" not in cut


def test_tally_counts_cut_texts_dropped_links_and_bad_dates() -> None:
    tally = Tally()
    assert tally.text("short", 10) == "short"
    assert tally.text("a b c d e f g h i j k", 5).endswith(CUT_NOTE)
    assert tally.link("https://example.org/", "http://[::1") is None
    assert tally.link("https://example.org/", "http://example.org:99999/") is None
    assert tally.link("https://example.org/", "javascript:alert(1)") is None
    assert tally.link("https://example.org/a/", "b") == "https://example.org/a/b"
    assert tally.link("https://example.org/", "  ") is None  # missing, not bad
    assert tally.date("Fri, 31 Dec 9999 23:59:59 -2359", UTC) is None
    assert tally.date("Mon, 15 Jan 2018 10:00:00 GMT", UTC) == dt.datetime(2018, 1, 15, 10, tzinfo=dt.UTC)
    assert (tally.cut_texts, tally.dropped_links, tally.bad_dates) == (1, 3, 1)


@pytest.mark.parametrize(
    "text",
    [
        "Fri, 31 Dec 9999 23:59:59 -2359",
        "0001-01-01T00:00:00+14:00",
        "1969-12-31T23:59:59Z",
        "2101-01-01",
        "9999-12-31",
    ],
)
def test_dates_outside_1970_to_2100_are_missing(text: str) -> None:
    found = read_date(text, UTC)
    assert found is not None and not in_range(found)
    assert parse_date(text, UTC) is None


def test_dates_at_the_edges_of_the_range_are_kept() -> None:
    assert parse_date("1970-01-01T00:00:00Z", UTC) == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert parse_date("2100-12-31T23:59:59+00:00", UTC) is not None
    # In range once converted to UTC, whatever the written zone.
    assert parse_date("1970-01-01T05:00:00+05:00", UTC) is not None
