"""The sign-up, confirmation and preferences pages in headless Chromium, over the real server and SMTP sink.

The screenshots in ``docs/`` (subscribe.png, preferences.png) are the ones
this test takes (copied to /tmp/ for a reviewer to look at).
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from digest import pipeline
from digest.models import Subscriber
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer
from tests.test_web_subscribe import NEW, Site, link, make_site, serving

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", ws.SECRET)


@pytest.fixture
def site(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Site]:
    path, clock = make_site(tmp_path, smtp_server)
    with serving(path, clock, smtp_server) as s:
        yield s


def tab_of(browser: Browser, problems: list[str], *, javascript: bool = True) -> Page:
    context = browser.new_context(viewport={"width": 900, "height": 860}, java_script_enabled=javascript)
    tab = context.new_page()

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            problems.append(msg.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    return tab


def shot(tab: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    tab.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, _ = struct.unpack(">II", data[16:24])
    assert width == 900 and len(data) > 10_000  # a blank page compresses to far less
    shutil.copyfile(path, f"/tmp/{name}")


def test_sign_up_confirm_and_preferences_in_a_browser_without_javascript(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    problems: list[str] = []
    tab = tab_of(browser, problems, javascript=False)  # the forms need no script and no cookie
    tab.goto(site.base + "/subscribe")
    expect(tab.locator("h1")).to_have_text("Subscribe to Cyber Weekly")
    expect(tab.locator("input[name=consent]")).not_to_be_checked()
    # The honeypot is out of sight.
    box = tab.locator("input[name=website]").bounding_box()
    assert box is not None and box["x"] < 0
    tab.fill("input[name=email]", NEW)
    tab.fill("input[name=name]", "Zoë Ångström")
    tab.check("input[name=themes][value=Cybersecurity]")
    shot(tab, tmp_path, "subscribe.png")
    # The browser refuses the form until the consent box is ticked.
    tab.click("button[type=submit]")
    expect(tab.locator("h1")).to_have_text("Subscribe to Cyber Weekly")
    assert site.mails(NEW) == []
    tab.check("input[name=consent]")
    tab.click("button[type=submit]")
    expect(tab.locator("h1")).to_have_text("Check your inbox")
    assert tab.context.cookies() == []

    (mail,) = site.mails(NEW)
    tab.goto(site.base + site.local(link(ws.text_body(mail), "confirm")))
    expect(tab.locator("main")).to_contain_text("n***@example.net")
    tab.click("button[value=confirm]")
    expect(tab.locator("h1")).to_have_text("You are subscribed")

    prefs = site.local(link(ws.text_body(site.mails(NEW)[1]), "p"))
    tab.goto(site.base + prefs)
    expect(tab.locator("input[name=themes][value=Cybersecurity]")).to_be_checked()
    tab.check("input[name=themes][value='AI & tech competition']")
    tab.click("button[value=save]")
    expect(tab.locator(".notice.ok")).to_have_text("Your themes are saved.")
    expect(tab.locator("input[name=themes][value='AI & tech competition']")).to_be_checked()
    shot(tab, tmp_path, "preferences.png")
    with pipeline.open_store(ws.load(site.path)) as store:
        assert store.theme_choice(NEW) == frozenset({"Cybersecurity", "AI & tech competition"})
    assert problems == []  # no CSP violation, no error


def test_pages_load_with_scripts_on_and_no_csp_violation(browser: Browser, site: Site) -> None:
    problems: list[str] = []
    tab = tab_of(browser, problems)
    config = ws.load(site.path)
    prefs = site.local(pipeline.recipient(config, Subscriber("r000@example.org")).preferences_url)
    for url, heading in (("/subscribe", "Subscribe to Cyber Weekly"), (prefs, "Your Cyber Weekly preferences")):
        tab.goto(site.base + url)
        expect(tab.locator("h1")).to_have_text(heading)
    tab.goto(site.base + prefs)
    tab.click("button[value=unsubscribe]")
    expect(tab.locator("h1")).to_have_text("You are unsubscribed")
    assert problems == []
    answer = tab.goto(site.base + "/confirm/" + "A" * 22)
    assert answer is not None and answer.status == 400
    expect(tab.locator("h1")).to_have_text("This confirmation link is not valid")
    assert all("400" in p for p in problems)  # Chromium logs the 400 of the page itself, nothing else
