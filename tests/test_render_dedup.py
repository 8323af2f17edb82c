"""Rendering a story carried by several sources: one entry, "via A, B", the other sources' links as "Also at"."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from lxml import html as lxml_html
from playwright.sync_api import Browser

from digest.config import DedupSettings
from digest.grouping import build_issue
from digest.models import Entry, IsoWeek, Issue, Sighting
from digest.render import Renderer, RenderSettings

TZ = ZoneInfo("Asia/Shanghai")
WHEN = dt.datetime(2018, 1, 10, 9, tzinfo=TZ)
WEEK = IsoWeek(2018, 2)


def renderer() -> Renderer:
    return Renderer(RenderSettings(title="Cyber Weekly", base_url="http://127.0.0.1:8025", tz=TZ, templates_dir=None))


def wire(ident: str, source: str, link: str, hours: float = 0, title: str = "", summary: str = "") -> Entry:
    return Entry(
        id=ident,
        source=source,
        title=title or "Hackers breach US Treasury workstations in major incident",
        link=link,
        summary=summary or "State-sponsored hackers remotely accessed Treasury workstations, the department said.",
        published=WHEN + dt.timedelta(hours=hours),
    )


def deduplicated_issue() -> Issue:
    entries = [
        wire("ap", "AP", "https://apnews.com/treasury"),
        wire("yahoo", "Yahoo News", "https://news.yahoo.com/treasury", hours=1),
        wire("ms", "MarketScreener", "https://marketscreener.com/treasury", hours=2),
        wire(
            "alone",
            "The Record",
            "https://therecord.media/other",
            hours=3,
            title="Police arrest botnet operator",
            summary="A man suspected of running a botnet of hacked routers was arrested in Spain.",
        ),
    ]
    return build_issue(
        entries, title="Cyber Weekly", weeks=[WEEK], themes=(), source_themes={"AP": "News", "The Record": "News"},
        tz=TZ, key=str(WEEK), dedup=DedupSettings(),
    )  # fmt: skip


def test_one_entry_via_every_source_with_the_others_links() -> None:
    rendered = renderer().render_variant(deduplicated_issue(), None)
    doc = lxml_html.fromstring(rendered.html)
    headlines = [h.text_content() for h in doc.find_class("headline")]
    assert headlines.count("Hackers breach US Treasury workstations in major incident") == 1
    metas = [m.text_content() for m in doc.find_class("meta")]
    assert "10 January 2018 · via AP, Yahoo News, MarketScreener" in metas
    assert "10 January 2018 · The Record" in metas  # a story of one source reads as before
    (also,) = doc.find_class("also")
    assert also.text_content().strip() == "Also at: Yahoo News, MarketScreener"
    assert [(a.text_content(), a.get("href")) for a in also.iter("a")] == [
        ("Yahoo News", "https://news.yahoo.com/treasury"),
        ("MarketScreener", "https://marketscreener.com/treasury"),
    ]

    text = rendered.text
    assert text.count("Hackers breach US Treasury workstations") == 1
    assert "  10 January 2018 · via AP, Yahoo News, MarketScreener\n" in text
    assert "  10 January 2018 · The Record\n" in text
    refs = dict(line.split("] ", 1) for line in text.splitlines() if line.startswith("["))
    also_line = next(line for line in text.splitlines() if "Also at:" in line)
    assert also_line.startswith("  Also at: Yahoo News [") and ", MarketScreener [" in also_line
    yahoo_ref = also_line.split("Yahoo News [", 1)[1].split("]", 1)[0]
    assert refs["[" + yahoo_ref] == "https://news.yahoo.com/treasury"


def test_hostile_sighting_names_are_escaped_and_bad_links_are_not_linked() -> None:
    sneaky = Entry(
        id="x",
        source="Good",
        title="A story seen elsewhere",
        link="https://good.example/x",
        published=WHEN,
        also=(
            Sighting('<script>alert("x")</script>', "javascript:alert(1)"),
            Sighting("Tom & Jerry", "https://tj.example/x?a=1&b=2"),
            Sighting("No Link", None),
        ),
    )
    issue = build_issue(
        [sneaky], title="T", weeks=[WEEK], themes=(), source_themes={}, tz=TZ, key=str(WEEK), dedup=DedupSettings()
    )
    rendered = renderer().render_variant(issue, None)
    assert "<script>alert" not in rendered.html
    assert "javascript:" not in rendered.html and "javascript:" not in rendered.text
    doc = lxml_html.fromstring(rendered.html)
    assert '· via Good, <script>alert("x")</script>, Tom & Jerry, No Link' in doc.find_class("meta")[0].text_content()
    (also,) = doc.find_class("also")
    assert [(a.text_content(), a.get("href")) for a in also.iter("a")] == [
        ("Tom & Jerry", "https://tj.example/x?a=1&b=2")
    ]


def test_screenshot_of_a_deduplicated_entry(browser: Browser, tmp_path: Path) -> None:
    rendered = renderer().render_variant(deduplicated_issue(), None)
    page = browser.new_page(viewport={"width": 700, "height": 900})
    try:
        page.set_content(rendered.html, wait_until="load")
        also = page.locator(".also").first
        assert also.is_visible()
        assert also.inner_text().strip() == "Also at: Yahoo News, MarketScreener"
        meta = page.locator(".meta", has_text="via AP").first
        assert meta.is_visible()
        box = also.bounding_box()
        assert box is not None and box["height"] > 0 and box["width"] > 0
        shot = tmp_path / "dedup.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 1000
    finally:
        page.close()
