"""The editor's preview end to end: a scaffolded working folder behind ``LocalBackend``.

The folder comes from ``digest init``'s scaffold and is fetched from its
bundled sample sources (local files); the app runs under uvicorn on
127.0.0.1 and is read over HTTP and in Debian's headless Chromium.

``DIGEST_UPDATE_SCREENSHOTS=1`` also writes the README's screenshots,
``docs/preview.png`` and ``docs/digest.png``; look at them before committing.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import lxml.html
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Route, expect

from digest import pipeline
from digest.backend import LocalBackend
from digest.config import load_config
from digest.scaffold import scaffold
from digest.web import create_app
from tests.fixtures.web_server import running

UPDATE_SCREENSHOTS = os.environ.get("DIGEST_UPDATE_SCREENSHOTS") == "1"
DOCS = Path(__file__).resolve().parent.parent / "docs"

#: When the sample was fetched; the backend itself reads the real clock.
FETCHED = dt.datetime(2018, 1, 16, 9, 0, tzinfo=dt.UTC)
WEEK = "2018-W02"
#: Headlines of the sample's week 2018-W02, by theme.
AI = ["China's AI chip start-ups raise record funding", 'Machine learning & the "Sputnik moment" debate']
CYBER = ["Ransomware gangs shift to cloud backups", "Meltdown and Spectre: what patching costs data centres"]
OTHER = ["ICANN's WHOIS dilemma ahead of GDPR", "Cross-border e-commerce rules stall at the WTO"]
HEADLINES = AI + CYBER + OTHER
#: A sample entry of week 2018-W01, which must not leak into 2018-W02.
ELSEWHERE = "Tencent opens an AI lab in Seattle"
#: The sample subscriber who chose Cybersecurity only.
BOB = "bob@example.org"
RELOAD = 15_000  # ms; a bound against hanging, the page polls every second


def save(path: Path, text: str) -> None:
    """Replace ``path`` in one step, as editors do, so the server never reads half a file."""
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    part.replace(path)


def words(text: str) -> str:
    """``text`` with runs of whitespace made single spaces (the text part wraps long lines)."""
    return " ".join(text.split())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scaffolded working folder with the sample sources fetched into its database."""
    folder = tmp_path / "work"
    scaffold(folder)
    config = load_config(folder / "digest.toml")

    def fetch() -> list[pipeline.FetchLine]:
        with pipeline.open_store(config) as store:
            return pipeline.fetch_all(config, store, FETCHED)

    # The fetcher runs its own event loop, and Playwright's sync API keeps one
    # running on this thread once a browser test has started.
    with ThreadPoolExecutor(max_workers=1) as pool:
        lines = pool.submit(fetch).result()
    assert [line.counts.new > 0 for line in lines] == [True] * len(config.sources)
    return folder


@pytest.fixture
def base_url(workdir: Path) -> Iterator[str]:
    config_path = workdir / "digest.toml"
    app = create_app(LocalBackend(config_path), title=load_config(config_path).digest.title)
    with running(app) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, trust_env=False, follow_redirects=False) as http:
        yield http


def weeks_with_entries(folder: Path) -> list[str]:
    config = load_config(folder / "digest.toml")
    with pipeline.open_store(config) as store:
        described = pipeline.describe(config, store.entries())
    return sorted({str(week) for _, _, week in described}, reverse=True)


# -- over HTTP -------------------------------------------------------------------


def test_next_issue_falls_back_to_the_newest_week_and_says_so(client: httpx.Client, workdir: Path) -> None:
    r = client.get("/")
    assert r.status_code == 200
    doc = lxml.html.fromstring(r.text)
    weeks = weeks_with_entries(workdir)
    assert WEEK in weeks
    options = doc.xpath("//select[@name='week']/option/@value")
    assert options == ["", *weeks]  # "Next issue", then every week with entries, newest first
    assert words(doc.xpath("string(//h1)")) == "Cyber Weekly preview"
    meta = words(doc.xpath("string(//dl[@class='meta'])"))
    # The sample is years old: the next issue's week is empty, so the newest week with entries stands in.
    assert f"Issue{weeks[0]}" in meta
    assert "Cyber Weekly" in doc.xpath("string(//*[@class='subject'])")
    warning = words(doc.xpath("string(//*[contains(@class, 'warn')])"))
    assert re.search(rf"next issue.*\d{{4}}-W\d\d.*no entries.*showing {weeks[0]}", warning), warning


def test_week_as_html_text_and_eml(client: httpx.Client) -> None:
    page = lxml.html.fromstring(client.get("/", params={"week": WEEK}).text)
    assert words(page.xpath("string(//dl[@class='meta'])")).startswith(f"Issue{WEEK}")
    assert page.xpath("//*[contains(@class, 'warn')]") == []  # a week asked for is shown as it is

    r = client.get(f"/preview/{WEEK}/all.html")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    shown = words(lxml.html.fromstring(r.text).text_content())
    for headline in HEADLINES:
        assert headline in shown
    assert ELSEWHERE not in shown

    r = client.get(f"/preview/{WEEK}/all.txt")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    text = words(r.text)
    for headline in HEADLINES:
        assert headline in text
    assert ELSEWHERE not in text

    r = client.get(f"/preview/{WEEK}/all.eml")
    assert r.headers["content-type"] == "message/rfc822"
    msg = email.message_from_bytes(r.content, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in msg.iter_parts()}
    assert sorted(parts) == ["text/html", "text/plain"]
    assert "Ransomware gangs shift to cloud backups" in words(parts["text/plain"])
    assert "Ransomware gangs shift to cloud backups" in parts["text/html"]


@pytest.mark.parametrize("week", ["foo", "2018-W99", "2018-W53", "0000-W01", "9999-W52"])
def test_a_bad_week_is_a_notice_and_its_messages_are_404(client: httpx.Client, week: str) -> None:
    r = client.get("/", params={"week": week})
    assert r.status_code == 200
    doc = lxml.html.fromstring(r.text)
    notice = words(doc.xpath("string(//*[@role='alert'])"))
    assert f"no such week '{week}'" in notice
    assert doc.xpath("//iframe") == []
    # The switcher still offers the weeks that have entries.
    assert WEEK in doc.xpath("//select[@name='week']/option/@value")
    for ext in ("html", "txt", "eml"):
        assert client.get(f"/preview/{week}/all.{ext}").status_code == 404
    assert client.get(f"/preview/{WEEK}/all.html").status_code == 200  # good weeks are unharmed


# -- in Chromium -----------------------------------------------------------------


class Tab:
    """A browser tab that records script errors and refuses every request off loopback."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.problems: list[str] = []
        self.refused: list[str] = []
        context.route("**/*", self._guard)
        self.page: Page = context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(str(exc)))

    def _guard(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "about:")):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort()

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.problems.append(msg.text)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = Tab(context)
    yield opened
    context.close()
    assert opened.refused == []


@pytest.mark.browser
def test_week_subscriber_and_text_view(tab: Tab, base_url: str) -> None:
    page = tab.page
    page.goto(f"{base_url}/?week={WEEK}")
    mail = page.frame_locator("#mail")
    expect(mail.get_by_text(CYBER[0], exact=True)).to_be_visible()
    for headline in AI:
        expect(mail.get_by_text(headline, exact=True)).to_be_visible()
    expect(page.locator(".meta")).to_contain_text("All themes")

    page.select_option("select[name=who]", f"sub:{BOB}")  # the page's script submits the form
    expect(page.locator(".meta")).to_contain_text(BOB)
    expect(page.locator("select[name=who]")).to_have_value(f"sub:{BOB}")
    expect(mail.get_by_text(CYBER[0], exact=True)).to_be_visible()
    body = mail.locator("body")
    for headline in AI + OTHER:
        expect(body).not_to_contain_text(headline)

    page.click("button[name=view][value=text]")
    expect(page.locator("#mail")).to_have_attribute("src", re.compile(rf"^/preview/{WEEK}/[^/]+\.txt$"))
    expect(body).to_contain_text(CYBER[0])
    expect(body).to_contain_text(f"This message was sent to {BOB}")
    expect(mail.locator("h1")).to_have_count(0)  # the plaintext part, not the HTML one
    for headline in AI:
        expect(body).not_to_contain_text(headline)
    expect(page.locator("select[name=who]")).to_have_value(f"sub:{BOB}")
    assert tab.problems == []


@pytest.mark.browser
def test_page_rebuilds_on_edits(tab: Tab, base_url: str, workdir: Path) -> None:
    page = tab.page
    page.goto(f"{base_url}/?week={WEEK}")
    mail = page.frame_locator("#mail")
    lede = mail.locator(".lede")
    expect(lede).to_have_text("Here is what was published this week, grouped by theme.")
    expect(page.locator("#status")).to_have_text("Live: reloads on changes", timeout=RELOAD)

    template = workdir / "templates" / "digest.html.j2"
    original = template.read_text(encoding="utf-8")
    edited = original.replace("grouped by theme.", "sorted by theme, freshly edited.")
    assert edited != original
    save(template, edited)
    expect(lede).to_have_text("Here is what was published this week, sorted by theme, freshly edited.", timeout=RELOAD)

    config = workdir / "digest.toml"
    toml = config.read_text(encoding="utf-8")
    save(config, toml.replace('title = "Cyber Weekly"', 'title = "Policy Weekly"', 1))
    expect(mail.locator("h1")).to_have_text("Policy Weekly", timeout=RELOAD)  # loaded: safe to edit again
    expect(page.locator(".meta .subject")).to_contain_text("Policy Weekly")
    expect(page.locator(".bar h1")).to_have_text("Policy Weekly preview")

    people = workdir / "subscribers" / "subscribers.csv"
    save(people, people.read_text(encoding="utf-8") + "nia@example.org,Nia Okoro,Digital economy,Africa/Lagos\n")
    newcomer = page.locator("select[name=who] option[value='sub:nia@example.org']")
    expect(newcomer).to_have_count(1, timeout=RELOAD)
    expect(newcomer).to_contain_text("Nia Okoro")
    # The message has loaded too, so the next edit cannot land between the page and its iframe.
    expect(lede).to_contain_text("freshly edited")

    broken = edited.replace("{% endfor %}", "{% endfro %}", 1)
    save(template, broken)
    error = page.locator(".notice.error code")
    expect(error).to_have_text(re.compile(r"digest\.html\.j2:\d+: .*endfro"), timeout=RELOAD)
    message = error.inner_text().strip()
    assert "\n" not in message
    named = re.match(r"(.+):(\d+): ", message)
    assert named is not None
    assert Path(named[1]) == template
    assert "{% endfro %}" in broken.splitlines()[int(named[2]) - 1]
    expect(page.locator("#mail")).to_have_count(0)
    # The week switcher stays usable while the template is broken; there is no variant to show.
    expect(page.locator("select[name=week] option[value='2018-W01']")).to_have_count(1)
    expect(page.locator("select[name=who]")).to_have_count(0)
    expect(page.locator("#status")).to_have_text("Live: reloads on changes", timeout=RELOAD)

    save(template, edited)
    expect(lede).to_contain_text("freshly edited", timeout=RELOAD)
    expect(page.locator(".notice.error")).to_have_count(0)
    expect(mail.get_by_text(CYBER[0], exact=True)).to_be_visible()
    assert tab.problems == []


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.browser
def test_screenshots(tab: Tab, base_url: str, tmp_path: Path) -> None:
    page = tab.page
    page.goto(f"{base_url}/?week={WEEK}")
    expect(page.frame_locator("#mail").get_by_text(CYBER[0], exact=True)).to_be_visible()
    expect(page.locator("#status")).to_have_text("Live: reloads on changes", timeout=RELOAD)
    shot = tmp_path / "preview.png"
    page.screenshot(path=str(shot))
    assert png_size(shot) == (1280, 900)
    assert shot.stat().st_size > 30_000  # a blank or error-only page compresses to far less

    mail = tab.context.new_page()
    mail.set_viewport_size({"width": 800, "height": 900})
    mail.goto(f"{base_url}/preview/{WEEK}/all.html")
    expect(mail.get_by_text(CYBER[0], exact=True)).to_be_visible()
    whole = tmp_path / "digest.png"
    mail.screenshot(path=str(whole), full_page=True)
    width, height = png_size(whole)
    assert width == 800
    assert height > 1500  # the whole issue, not one screen of it
    if UPDATE_SCREENSHOTS:
        DOCS.mkdir(exist_ok=True)
        (DOCS / "preview.png").write_bytes(shot.read_bytes())
        (DOCS / "digest.png").write_bytes(whole.read_bytes())
    assert tab.problems == []
