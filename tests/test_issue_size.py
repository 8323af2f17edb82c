"""How big an issue gets: ``[issue] max_entries`` per variant, and ``min_per_theme`` folding into Other.

The rest of a capped issue is one line, "N more in the web version", linking
to the variant's web version, which (served by the real web app) shows every
entry.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx
import pytest

from digest import grouping, pipeline
from digest.backend import LocalBackend
from digest.models import OTHER_THEME, Entry, IsoWeek, Issue, Section
from digest.web import create_app
from tests.data.carry.site import Site, day, monday
from tests.fixtures.smtp_server import SmtpServer
from tests.fixtures.web_server import running

W02 = (IsoWeek(2018, 2),)


def site_with(tmp_path: Path, alpha: int, beta: int, issue: str, smtp_port: int | None = None) -> Site:
    site = Site(tmp_path, smtp_port=smtp_port, issue=issue)
    for i in range(alpha):
        site.publish(f"a{i:03d}", day(2018, 2, 1 + i % 7, i % 24), title=f"Alpha story {i:03d}")
    for i in range(beta):
        site.publish(f"b{i:03d}", day(2018, 2, 1 + i % 7, i % 24), theme="beta", title=f"Beta story {i:03d}")
    site.fetch(monday(2018, 3))
    return site


def built(site: Site) -> pipeline.Built:
    config = site.config
    with pipeline.open_store(config) as store:
        issue = pipeline.make_issue(config, store, W02)
        return pipeline.build(config, store, issue, monday(2018, 3))


def test_an_issue_shows_max_entries_and_links_the_rest_in_html_and_text(tmp_path: Path) -> None:
    site = site_with(tmp_path, 8, 4, "max_entries = 5")
    rendered = built(site).variants["all"]
    web = "http://127.0.0.1:8025/issues/2018-W02/all.html"
    assert rendered.html.count('class="headline"') == 5
    assert re.search(
        rf'<a class="notice-link" href="{re.escape(web)}"[^>]*>7 more in the web version</a>', rendered.html
    )
    assert f"7 more in the web version:\n{web}\n" in rendered.text
    assert rendered.text.count("* Alpha story") == 3 and rendered.text.count("* Beta story") == 2  # a fair share


def test_each_variant_is_capped_on_its_own(tmp_path: Path) -> None:
    site = site_with(tmp_path, 8, 4, "max_entries = 5")
    issue = built(site).issue
    renderer = pipeline.renderer_for(site.config)
    (alpha,) = renderer.variants(issue, [frozenset({"Alpha"})]).values()
    (beta,) = renderer.variants(issue, [frozenset({"Beta"})]).values()
    assert (
        alpha.text.count("* Alpha story") == 5
        and f"3 more in the web version:\n{renderer.web_url('2018-W02', alpha.variant)}" in alpha.text
    )
    assert beta.text.count("* Beta story") == 4 and "more in the web version" not in beta.text + beta.html


def test_the_web_version_of_a_capped_issue_shows_every_entry(tmp_path: Path, smtp_server: SmtpServer) -> None:
    site = site_with(tmp_path, 8, 4, "max_entries = 5", smtp_port=smtp_server.port)
    assert site.run(monday(2018, 3)).sent is not None
    with running(create_app(LocalBackend(site.root / "digest.toml"), title="Carry")) as base:
        page = httpx.get(f"{base}/issues/2018-W02/all.html", trust_env=False)
    assert page.status_code == 200
    assert page.text.count('class="headline"') == 12
    assert "more in the web version" not in page.text


def test_a_huge_week_gives_a_small_message(tmp_path: Path) -> None:
    site = site_with(tmp_path, 900, 300, "")  # the default max_entries = 60
    result = built(site)
    rendered = result.variants["all"]
    assert rendered.text.count("\n* ") == 60
    rest = len(result.issue.entries) - 60  # [fetch] max_entries keeps each source's newest 500
    assert rest >= 400
    assert f"{rest} more in the web version" in rendered.html and f"{rest} more in the web version:" in rendered.text
    assert len(rendered.text.encode()) < 30_000 and len(rendered.html.encode()) < 102_000


def test_a_theme_thinner_than_min_per_theme_folds_into_other(tmp_path: Path) -> None:
    site = site_with(tmp_path, 3, 1, "min_per_theme = 2")
    rendered = built(site).variants["all"]
    issue = built(site).issue
    assert [(s.theme, len(s.entries)) for s in issue.sections] == [("Alpha", 3), (OTHER_THEME, 1)]
    assert "OTHER (1)" in rendered.text and "BETA" not in rendered.text
    assert "Beta story 000" in rendered.text


def _entry(i: int, when: dt.datetime) -> Entry:
    return Entry(id=f"e{i}", source="S", title=f"T{i}", published=when)


@pytest.mark.parametrize("min_per_theme", [0, 1])
def test_folding_is_off_at_one_or_less(min_per_theme: int) -> None:
    week = IsoWeek(2018, 2)
    issue = Issue("2018-W02", "t", (week,), (Section("A", week, (_entry(1, day(2018, 2)),)),))
    assert grouping.fold_thin_sections(issue, min_per_theme) is issue


def test_folding_merges_into_an_existing_other_newest_first() -> None:
    week = IsoWeek(2018, 2)
    thin = Section("A", week, (_entry(1, day(2018, 2, 5)),))
    fat = Section("B", week, (_entry(2, day(2018, 2, 4)), _entry(3, day(2018, 2, 3))))
    other = Section(OTHER_THEME, week, (_entry(4, day(2018, 2, 6)), _entry(5, day(2018, 2, 1))))
    folded = grouping.fold_thin_sections(Issue("k", "t", (week,), (thin, fat, other)), 2)
    assert [(s.theme, [e.id for e in s.entries]) for s in folded.sections] == [
        ("B", ["e2", "e3"]),
        (OTHER_THEME, ["e4", "e1", "e5"]),
    ]


def test_allot_shares_fairly_and_never_shrinks_when_the_budget_grows() -> None:
    from digest.render.view import allot

    assert allot([8, 4], 5) == [3, 2]
    assert allot([1, 10, 10], 9) == [1, 4, 4]
    assert allot([0, 3], 10) == [0, 3]
    assert allot([], 5) == []
    for budget in range(0, 25):
        assert sum(allot([7, 2, 12], budget)) == min(budget, 21)
        assert all(a <= b for a, b in zip(allot([7, 2, 12], budget), allot([7, 2, 12], budget + 1), strict=True))
