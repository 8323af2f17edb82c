"""Theme rules, ISO weeks in a time zone, and building an Issue."""

from __future__ import annotations

import datetime as dt
import random
from zoneinfo import ZoneInfo

import pytest

from digest.grouping import (
    ThemeMatcher,
    assign_theme,
    build_issue,
    issue_key,
    last_complete_week,
    theme_of,
    week_of,
    weeks_between,
)
from digest.models import OTHER_THEME, Entry, IsoWeek, Theme
from tests.data.render.sample_entries import THEMES, TZ, sample_entries

UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")


def entry(
    ident: str = "e1",
    *,
    title: str = "",
    summary: str = "",
    source: str = "Feed",
    tags: tuple[str, ...] = (),
    when: dt.datetime | None = None,
) -> Entry:
    return Entry(
        id=ident,
        source=source,
        title=title,
        summary=summary,
        tags=tags,
        published=when or dt.datetime(2018, 1, 10, 12, tzinfo=UTC),
    )


AI = Theme(name="AI", keywords=("AI",))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the global tussle in AI and other fronts", "AI"),
        ("AI.", "AI"),
        ("(AI)", "AI"),
        ("ai policy, lower case", "AI"),
        ("he said so", OTHER_THEME),
        ("the MAIN point", OTHER_THEME),
        ("AIs and AIDS", OTHER_THEME),
        ("ÉAI is a prefix glued to letters", OTHER_THEME),
    ],
)
def test_keywords_match_whole_words_only(text: str, expected: str) -> None:
    assert assign_theme(entry(summary=text), [AI], None) == expected


def test_keywords_are_unicode_aware_and_casefolded() -> None:
    themes = [Theme(name="Streets", keywords=("straße",)), Theme(name="Cafés", keywords=("café",))]
    assert assign_theme(entry(title="Die STRASSE ist lang"), themes, None) == "Streets"
    assert assign_theme(entry(title="Un Café, s'il vous plaît"), themes, None) == "Cafés"
    # "é" is a word character, so "cafés" is not the word "café".
    assert assign_theme(entry(title="Les cafés"), themes, None) == OTHER_THEME


def test_keywords_with_punctuation_at_the_edges() -> None:
    themes = [Theme(name="US", keywords=("U.S.",)), Theme(name="C++", keywords=("C++",))]
    assert assign_theme(entry(summary="lags behind the U.S. in this"), themes, None) == "US"
    assert assign_theme(entry(summary="written in C++, mostly"), themes, None) == "C++"
    assert assign_theme(entry(summary="written in C, mostly"), themes, None) == OTHER_THEME


def test_phrases_allow_any_whitespace_but_need_whole_words() -> None:
    theme = Theme(name="Gov", phrases=("internet governance",))
    assert assign_theme(entry(summary="global Internet\n   governance must"), [theme], None) == "Gov"
    assert assign_theme(entry(summary="internet governances"), [theme], None) == OTHER_THEME
    assert assign_theme(entry(summary="internetgovernance"), [theme], None) == OTHER_THEME
    assert assign_theme(entry(summary="governance of the internet"), [theme], None) == OTHER_THEME


def test_categories_and_sources() -> None:
    themes = [
        Theme(name="Policy", categories=("Policy",)),
        Theme(name="From the blog", sources=("Team Blog",)),
    ]
    assert assign_theme(entry(tags=("news", "POLICY")), themes, None) == "Policy"
    assert assign_theme(entry(source="Team Blog"), themes, None) == "From the blog"
    assert assign_theme(entry(tags=("politics",)), themes, None) == OTHER_THEME


def test_tags_text_is_searched_too() -> None:
    assert assign_theme(entry(tags=("AI",)), [AI], None) == "AI"


def test_first_matching_rule_wins_then_source_default_then_other() -> None:
    themes = [Theme(name="First", keywords=("cyber",)), Theme(name="Second", keywords=("cyber", "norms"))]
    assert assign_theme(entry(summary="cyber norms"), themes, None) == "First"
    assert assign_theme(entry(summary="norms only"), themes, "Default") == "Second"
    assert assign_theme(entry(summary="nothing here"), themes, "Default") == "Default"
    assert assign_theme(entry(summary="nothing here"), themes, None) == OTHER_THEME


def test_theme_matcher_reports_no_match_as_none() -> None:
    matcher = ThemeMatcher(THEMES)
    assert matcher.match(entry(summary="The weather was fine")) is None
    assert matcher.match(entry(summary="state-sponsored hacking")) == "Cybersecurity"


def test_sample_listing_themes() -> None:
    themes = {e.published.date().isoformat(): theme_of(e, THEMES, {}) for e in sample_entries()}  # type: ignore[union-attr]
    assert themes == {
        "2018-01-15": "AI & tech competition",
        "2018-01-08": "AI & tech competition",
        "2017-12-29": "Cybersecurity",
        "2017-12-27": "Digital economy",
        "2017-10-09": OTHER_THEME,
        "2017-04-18": "Internet governance",
        "2016-11-23": "Cybersecurity",
        "2016-06-16": "Cybersecurity",
        "2016-01-28": "Cybersecurity",
        "2016-01-25": "Internet governance",
    }


def test_without_themes_group_by_first_tag_else_source_else_source_theme() -> None:
    assert theme_of(entry(tags=("Security", "Policy")), [], {}) == "Security"
    assert theme_of(entry(source="Lawfare"), [], {}) == "Lawfare"
    assert theme_of(entry(source="Lawfare", tags=("Security",)), [], {"Lawfare": "Law"}) == "Law"


def test_a_sunday_evening_belongs_to_its_local_week() -> None:
    # Sunday 14 January 2018, 23:30 in New York is already Monday in UTC.
    late = dt.datetime(2018, 1, 14, 23, 30, tzinfo=NEW_YORK)
    assert IsoWeek.of(late, UTC) == IsoWeek(2018, 3)
    assert week_of(entry(when=late), NEW_YORK) == IsoWeek(2018, 2)


def test_last_complete_week_is_taken_in_the_digest_time_zone() -> None:
    # Monday 00:30 in Shanghai is still Sunday in UTC.
    now = dt.datetime(2018, 1, 14, 16, 30, tzinfo=UTC)
    assert last_complete_week(now, ZoneInfo("Asia/Shanghai")) == IsoWeek(2018, 2)
    assert last_complete_week(now, ZoneInfo("UTC")) == IsoWeek(2018, 1)
    with pytest.raises(ValueError):
        last_complete_week(dt.datetime(2018, 1, 14), UTC)


def test_issue_key_and_weeks_between() -> None:
    assert issue_key([IsoWeek(2018, 2)]) == "2018-W02"
    assert issue_key([IsoWeek(2018, 3), IsoWeek(2018, 1), IsoWeek(2018, 2)]) == "2018-W01..2018-W03"
    with pytest.raises(ValueError):
        issue_key([])
    span = weeks_between(IsoWeek(2015, 52), IsoWeek(2016, 2))
    assert [str(w) for w in span] == ["2015-W52", "2015-W53", "2016-W01", "2016-W02"]
    assert weeks_between(IsoWeek(2018, 2), IsoWeek(2018, 2)) == (IsoWeek(2018, 2),)
    with pytest.raises(ValueError):
        weeks_between(IsoWeek(2018, 3), IsoWeek(2018, 2))


def _sample_issue(entries: list[Entry] | tuple[Entry, ...], weeks: list[IsoWeek] | None) -> object:
    return build_issue(
        entries,
        title="Cyber Weekly",
        weeks=weeks,
        themes=THEMES,
        source_themes={},
        tz=TZ,
        key=issue_key(weeks) if weeks else "all",
    )


def test_build_issue_orders_weeks_newest_first_then_config_themes_other_last() -> None:
    weeks = list(weeks_between(IsoWeek(2017, 40), IsoWeek(2018, 3)))
    issue = build_issue(
        sample_entries(), title="Cyber Weekly", weeks=weeks, themes=THEMES, source_themes={}, tz=TZ, key="k"
    )
    layout = [(str(s.week), s.theme, len(s.entries)) for s in issue.sections]
    assert layout == [
        ("2018-W03", "AI & tech competition", 1),
        ("2018-W02", "AI & tech competition", 1),
        ("2017-W52", "Cybersecurity", 1),
        ("2017-W52", "Digital economy", 1),
        ("2017-W41", OTHER_THEME, 1),
    ]
    # The requested weeks are all covered, even those without entries.
    assert issue.weeks == tuple(weeks)
    assert issue.key == "k"


def test_build_issue_keeps_only_the_requested_weeks() -> None:
    issue = build_issue(
        sample_entries(),
        title="T",
        weeks=[IsoWeek(2018, 2)],
        themes=THEMES,
        source_themes={},
        tz=TZ,
        key="2018-W02",
    )
    assert [e.published.date() for e in issue.entries] == [dt.date(2018, 1, 8)]  # type: ignore[union-attr]
    assert issue.weeks == (IsoWeek(2018, 2),)


def test_build_issue_is_independent_of_input_order() -> None:
    base = [
        entry("b", summary="AI one", when=dt.datetime(2018, 1, 9, tzinfo=UTC)),
        entry("a", summary="AI two", when=dt.datetime(2018, 1, 9, tzinfo=UTC)),
        entry("c", summary="AI three", when=dt.datetime(2018, 1, 11, tzinfo=UTC)),
        entry("d", summary="weather", when=dt.datetime(2018, 1, 12, tzinfo=UTC)),
        *sample_entries(),
    ]
    first = build_issue(base, title="T", weeks=None, themes=[AI, *THEMES], source_themes={}, tz=TZ, key="all")
    rng = random.Random(7)
    for _ in range(5):
        shuffled = list(base)
        rng.shuffle(shuffled)
        again = build_issue(shuffled, title="T", weeks=None, themes=[AI, *THEMES], source_themes={}, tz=TZ, key="all")
        assert again == first
    ai = next(s for s in first.sections if s.theme == "AI" and s.week == IsoWeek(2018, 2))
    # Newest first, then by id for entries published at the same moment.
    assert [e.id for e in ai.entries][:3] == ["c", "a", "b"]
    assert ai.entries[3].published == dt.datetime(2018, 1, 8, tzinfo=TZ)
    assert first.weeks == tuple(sorted({week_of(e, TZ) for e in base}))


def test_source_default_theme_and_unconfigured_theme_order() -> None:
    entries = [
        entry("1", summary="weather", source="Blog"),
        entry("2", summary="AI news", source="Blog"),
        entry("3", summary="sport", source="Wire"),
    ]
    issue = build_issue(
        entries,
        title="T",
        weeks=None,
        themes=[AI],
        source_themes={"Blog": "Blog posts"},
        tz=UTC,
        key="k",
    )
    assert [s.theme for s in issue.sections] == ["AI", "Blog posts", OTHER_THEME]


def test_without_themes_sections_are_alphabetical() -> None:
    entries = [
        entry("1", source="Zeta"),
        entry("2", source="alpha"),
        entry("3", source="Mid", tags=("Beta",)),
    ]
    issue = build_issue(entries, title="T", weeks=None, themes=[], source_themes={}, tz=UTC, key="k")
    assert [s.theme for s in issue.sections] == ["alpha", "Beta", "Zeta"]
