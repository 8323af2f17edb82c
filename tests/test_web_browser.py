"""The preview UI and the unsubscribe page in headless Chromium (Debian's, never a download)."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from digest.web import create_app
from tests.fixtures.web_server import running
from tests.test_web import TITLE, FakeBackend, sample_preview

pytestmark = pytest.mark.browser


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def base_url(backend: FakeBackend) -> Iterator[str]:
    with running(create_app(backend, title=TITLE)) as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    context = browser.new_context(viewport={"width": 1200, "height": 760})
    tab = context.new_page()
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            problems.append(msg.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    yield tab, problems
    context.close()


def test_preview_switches_views_and_reloads_itself(
    page: tuple[Page, list[str]], base_url: str, backend: FakeBackend, tmp_path: Path
) -> None:
    tab, problems = page
    tab.goto(base_url + "/")
    mail = tab.frame_locator("#mail")
    expect(mail.locator("h1")).to_have_text("Cyber Weekly 2018-W02")
    expect(mail.locator("body")).to_contain_text("All themes: quantum sandworms")
    expect(tab.locator(".meta .subject")).to_have_text("Cyber Weekly 2018-W02: All themes")
    expect(tab.locator(".notice.warn")).to_contain_text("HTTP 503")

    tab.click("button[name=view][value=text]")
    expect(tab.locator("#mail")).to_have_attribute("src", "/preview/next/all.txt")
    expect(mail.locator("body")).to_contain_text("All themes: quantum sandworms")
    expect(mail.locator("h1")).to_have_count(0)  # plain text, not the HTML part

    tab.select_option("select[name=who]", "sub:bob@example.org")  # the page's script submits the form
    expect(tab.locator("#mail")).to_have_attribute("src", "/preview/next/ai.txt")
    expect(mail.locator("body")).to_contain_text("AI: neural lighthouses")
    expect(mail.locator("body")).not_to_contain_text("quantum sandworms")
    expect(tab.locator(".meta")).to_contain_text("Bob <bob@example.org>")
    expect(tab.locator("select[name=who]")).to_have_value("sub:bob@example.org")

    # An edit elsewhere changes the fingerprint; the page notices and reloads.
    backend.change(sample_preview("2018-W02", tag="edited"), "fp-2")
    expect(mail.locator("body")).to_contain_text("AI: neural lighthouses edited", timeout=15_000)
    expect(tab.locator("body")).to_have_attribute("data-fingerprint", "fp-2")
    expect(tab.locator("select[name=who]")).to_have_value("sub:bob@example.org")

    tab.select_option("select[name=who]", "variant:all")
    tab.click("button[name=view][value=html]")
    expect(mail.locator("body")).to_contain_text("All themes: quantum sandworms edited")
    expect(tab.locator("#status")).to_have_text("Live: reloads on changes")
    shot = tmp_path / "preview.png"
    tab.screenshot(path=str(shot))
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 760)
    assert len(data) > 10_000  # a blank page compresses to far less
    shutil.copyfile(shot, "/tmp/preview.png")
    assert problems == []  # no CSP violation, no script error


def test_unsubscribe_button(page: tuple[Page, list[str]], base_url: str, backend: FakeBackend) -> None:
    tab, problems = page
    tab.goto(base_url + "/u/tok-ann.sig")
    expect(tab.locator("main")).to_contain_text("a***@example.org")
    assert backend.unsubscribed == {}  # loading the page changed nothing
    tab.click("text=Unsubscribe >> nth=-1")
    expect(tab.locator("h1")).to_have_text("You are unsubscribed")
    expect(tab.locator("main")).to_contain_text("a***@example.org will get no more issues of Cyber Weekly")
    assert backend.unsubscribed == {"ann@example.org": "form"}
    assert problems == []
