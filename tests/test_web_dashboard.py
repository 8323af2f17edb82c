"""The preview's dashboard over real HTTP and in headless Chromium, after real fetches and sends.

The folder is scaffolded, fetched three times (one source, with a hostile
name, always fails: its file is missing; another is renamed to a hostile
name), and two issues are sent over the aiosmtpd fixture, one with a refused
recipient. The page must show exactly what ``digest issues --json`` and
``digest sources --json`` say. ``DIGEST_UPDATE_SCREENSHOTS=1`` also writes
``docs/dashboard.png``; look at it before committing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import lxml.html
import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, ConsoleMessage, expect

from digest import pipeline
from digest.backend import LocalBackend
from digest.cli import cli
from digest.models import Delivery, IsoWeek
from digest.web import create_app
from digest.web.app import PAGE_CSP
from digest.web.dashboard import (
    STATES,
    STRIP,
    FetchMark,
    IssueBar,
    SourceStrip,
    columns,
    counts_chart,
    issues_chart,
    rate_chart,
    sources_chart,
)
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer
from tests.fixtures.web_server import running
from tests.test_cli_serving import interrupt, start

UPDATE_SCREENSHOTS = os.environ.get("DIGEST_UPDATE_SCREENSHOTS") == "1"
DOCS = Path(__file__).resolve().parent.parent / "docs"

FAILING = '<script>alert("x")</script> Feed'
RENAMED = 'AI "&" Watch <b>'
HOSTILE_THEME = "<img src=x onerror=alert(1)> & co"
REFUSED = "r002@example.org"
FETCHES = 3


@dataclass(frozen=True, slots=True)
class Site:
    path: Path
    url: str


def _step_clock(at: dt.datetime, step: dt.timedelta) -> Any:
    state = [at]

    def clock() -> dt.datetime:
        state[0] += step
        return state[0]

    return clock


def _prepare(path: Path, smtp_server: SmtpServer) -> None:
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        for n in range(FETCHES):
            pipeline.fetch_all(config, store, ws.RUN_NOW + dt.timedelta(hours=n))
        pipeline.send_issue(config, store, (IsoWeek(2018, 1),), clock=ws.fixed_clock())
        smtp_server.inject("RCPT", 550, recipient=REFUSED, text="5.1.1 user unknown", times=None)
        # Seconds apart, so the newest issue's send spans several minutes.
        later = _step_clock(ws.RUN_NOW + dt.timedelta(days=1), dt.timedelta(seconds=7))
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=later)


@pytest.fixture
def site(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Site]:
    extra = (
        f'\n[[themes]]\nname = {json.dumps(HOSTILE_THEME)}\nkeywords = ["zeppelin"]\n'
        f'\n[[sources]]\nname = {json.dumps(FAILING)}\nkind = "feed"\nurl = "sources/missing.xml"\n'
    )
    path = ws.make_folder(tmp_path / "work", ws.rows(12), port=smtp_server.port, extra=extra)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('name = "AI Watch"', f"name = {json.dumps(RENAMED)}", 1), encoding="utf-8")
    # The fetcher runs its own event loop; Playwright's sync API may hold one on this thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_prepare, path, smtp_server).result()
    app = create_app(LocalBackend(path), title="Cyber Weekly")
    with running(app) as url:
        yield Site(path, url)


def cli_json(path: Path, *args: str) -> list[dict[str, Any]]:
    result = CliRunner(env=ws.ENV).invoke(cli, ["--config", str(path), *args, "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_dashboard_shows_what_the_json_commands_say(site: Site) -> None:
    with httpx.Client(base_url=site.url, trust_env=False) as http:
        answer = http.get("/dashboard")
        preview = http.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"] == PAGE_CSP
    assert answer.headers["cache-control"] == "no-store"
    assert 'href="/dashboard"' in preview.text  # linked from the preview UI
    body = answer.text
    # Hostile names arrive as text, never as markup.
    assert "<script>alert" not in body and "<b>" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Feed" in body
    assert "AI &quot;&amp;&quot; Watch &lt;b&gt;" in body
    doc = lxml.html.fromstring(body)
    assert doc.xpath("//script") == [] and doc.xpath("//*[@style]") == []

    issues = cli_json(site.path, "issues")
    bars = doc.xpath("//svg[contains(@class,'issues')]//g[@data-issue]")
    assert [g.get("data-issue") for g in bars] == [i["key"] for i in issues] == ["2018-W02", "2018-W01"]
    for g, issue in zip(bars, issues, strict=True):
        shown = {r.get("data-state"): int(r.get("data-count")) for r in g.xpath(".//rect[@data-state]")}
        assert shown == {state: n for state, n in issue["counts"].items() if n}
        assert issue["state"] in g.text_content()
    assert issues[0]["counts"]["failed-permanent"] == 1 and issues[0]["state"] == "partly failed"

    # The newest issue's send rate: every sent message in some minute, minutes without gaps.
    columns = doc.xpath("//svg[contains(@class,'rate')]//rect[@data-minute]")
    assert sum(int(c.get("data-count")) for c in columns) == issues[0]["counts"]["sent"]
    minutes = [dt.datetime.fromisoformat(c.get("data-minute")) for c in columns]
    assert len(minutes) >= 2
    assert all(b - a == dt.timedelta(minutes=1) for a, b in itertools.pairwise(minutes))
    first = dt.datetime.fromisoformat(issues[0]["first_send"]).replace(second=0, microsecond=0)
    assert minutes[0] == first.astimezone(dt.UTC)

    sources = cli_json(site.path, "sources")
    strips = doc.xpath("//svg[contains(@class,'sources')]//g[@data-source]")
    assert [g.get("data-source") for g in strips] == [s["name"] for s in sources]
    assert FAILING in [s["name"] for s in sources] and RENAMED in [s["name"] for s in sources]
    for g, source in zip(strips, sources, strict=True):
        marks = g.xpath(".//g[@data-status]")
        oldest_first = list(reversed(source["history"]))
        assert [m.get("data-status") for m in marks] == [h["status"] for h in oldest_first]
        assert [m.get("data-items") for m in marks] == [
            None if h["items"] is None else str(h["items"]) for h in oldest_first
        ]
        assert len(g.xpath(".//rect[contains(@class,'none')]")) == STRIP - len(marks)
        assert int(g.get("data-failures")) == source["consecutive_failures"]
        assert ("alert" in g.get("class")) is source["alert"]
    failing = next(g for g in strips if g.get("data-source") == FAILING)
    assert [m.get("data-status") for m in failing.xpath(".//g[@data-status]")] == ["failed"] * FETCHES
    assert "3 failures in a row" in failing.text_content()
    ok = next(s for s in sources if s["name"] == RENAMED)
    assert ok["history"][0]["items"] and ok["history"][0]["status"] in ("ok", "not_modified")

    people = cli_json(site.path, "subscribers", "list")
    by_status = {g.get("data-status"): int(g.get("data-count")) for g in doc.xpath("//g[@data-status and @data-count]")}
    assert by_status == dict(Counter(p["status"] for p in people))
    assert by_status["bounced"] == 1  # the refused address (550 is a hard bounce)
    by_theme = {g.get("data-theme"): int(g.get("data-count")) for g in doc.xpath("//g[@data-theme]")}
    active = [p for p in people if p["status"] == "active"]
    every = sum(1 for p in active if not p["themes"])
    assert by_theme[HOSTILE_THEME] == every  # only those who take every theme get a theme no one chose
    assert by_theme["Cybersecurity"] == sum(1 for p in active if not p["themes"] or "Cybersecurity" in p["themes"])


def test_dashboard_only_with_the_preview(site: Site) -> None:
    public = create_app(LocalBackend(site.path), title="Cyber Weekly", enable_preview=False)
    with running(public) as url, httpx.Client(base_url=url, trust_env=False) as http:
        assert http.get("/dashboard").status_code == 404
        assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("command", "status"),
    [(("preview",), 200), (("serve",), 404), (("serve", "--no-preview"), 404), (("serve", "--preview"), 200)],
)
def test_dashboard_in_the_real_commands(tmp_path: Path, command: tuple[str, ...], status: int) -> None:
    """``digest preview`` serves it; ``digest serve`` only with ``--preview``."""
    folder = tmp_path / "site"
    assert CliRunner().invoke(cli, ["init", str(folder)]).exit_code == 0
    path = folder / "digest.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("[digest]\n", '[digest]\nsecret = "serve-needs-a-secret"\n', 1), encoding="utf-8")
    proc, base = start(path, *command)
    try:
        answer = httpx.get(base + "/dashboard", trust_env=False)
        assert answer.status_code == status
        if status == 200:  # nothing fetched or sent yet: every chart says so
            assert "No issue has been frozen yet" in answer.text
            assert answer.text.count('class="mark none"') == STRIP * 3  # three sources, never fetched
    finally:
        code, _, err = interrupt(proc)
    assert code == 0 and "Traceback" not in err


def test_charts_escape_names_and_handle_nothing_yet() -> None:
    assert "No issue has been frozen yet" in issues_chart(())
    when = dt.datetime(2018, 1, 16, 10, 0, tzinfo=dt.UTC)
    hostile = '"><script>x</script>&'
    strip = SourceStrip(hostile, "feed", 1, False, (FetchMark("failed", None, when, "<b>boom</b>"),))
    svg = sources_chart((strip,), 3)
    assert "<script>" not in svg and "<b>" not in svg
    assert "&lt;b&gt;boom&lt;/b&gt;" in svg and "1 failure in a row" in svg
    bar = issues_chart((IssueBar(hostile, "sent", (("sent", 2), ("unknown", 0))),))
    assert "<script>" not in bar and 'data-count="2"' in bar and 'data-state="unknown"' not in bar
    assert "<script>" not in counts_chart("x", ((hostile, 4),), "theme")


@pytest.mark.browser
def test_dashboard_in_chromium(site: Site, browser: Browser, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            problems.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(site.url + "/")
    page.click("a.dashlink")
    expect(page.locator("h1")).to_have_text("Cyber Weekly dashboard")
    expect(page.locator("svg.issues g.issue")).to_have_count(2)
    expect(page.locator("svg.issues g[data-issue='2018-W02'] rect[data-state='failed-permanent']")).to_have_attribute(
        "data-count", "1"
    )
    strips = page.locator("svg.sources g.source")
    expect(strips).to_have_count(4)
    expect(page.locator("svg.sources g.source.alert")).to_have_count(1)
    expect(page.locator("svg.sources g.source.alert g.mark")).to_have_count(FETCHES)
    expect(page.locator("svg.sources g.source.alert")).to_contain_text("3 failures in a row")
    expect(page.locator("svg.rate rect.col").first).to_be_visible()
    # Coloured by the stylesheet: a sent segment is green, a failed fetch red.
    sent = page.locator("svg.issues rect.st-sent").first
    assert sent.evaluate("el => getComputedStyle(el).fill") == "rgb(46, 125, 79)"
    failed = page.locator("svg.sources g.fs-failed rect").first
    assert failed.evaluate("el => getComputedStyle(el).fill") == "rgb(192, 57, 43)"
    box = page.locator("svg.sources").bounding_box()
    assert box is not None and box["width"] > 800  # scaled to the page, not collapsed
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 30_000
    if UPDATE_SCREENSHOTS:
        DOCS.mkdir(exist_ok=True)
        (DOCS / "dashboard.png").write_bytes(shot.read_bytes())
    context.close()
    assert problems == []  # no CSP violation, no script error


def test_a_long_send_is_drawn_in_columns_of_several_minutes() -> None:
    start = dt.datetime(2018, 1, 16, 10, 0, tzinfo=dt.UTC)
    # Three days of retries: 4320 minutes, mostly idle.
    rate = tuple((start + dt.timedelta(minutes=i), 5 if i < 30 or i % 600 == 0 else 0) for i in range(3 * 24 * 60))
    width, cols = columns(rate)
    assert width == 18 and len(cols) == 240
    assert sum(n for _, n in cols) == sum(n for _, n in rate)
    svg = rate_chart("2018-W02", rate)
    doc = lxml.html.fromstring(svg)
    bars = doc.xpath("//rect[@data-minute]")
    assert len(bars) == 240 and {b.get("data-minutes") for b in bars} == {"18"}
    assert sum(int(b.get("data-count")) for b in bars) == sum(n for _, n in rate)
    assert "each column sums 18 minutes" in svg and "at most 5 in a minute" in svg
    assert columns(rate[:3]) == (1, list(rate[:3]))


def test_every_ledger_state_has_a_place_in_the_stack() -> None:
    assert sorted(STATES) == sorted(str(s) for s in Delivery)
