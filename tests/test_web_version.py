"""The public web version of a sent issue: no one's values, a neutral greeting, a way to unsubscribe.

A real send over the aiosmtpd fixture freezes the issue; the web app then
serves its web version from that store over uvicorn on loopback, and headless
Chromium shows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from digest import pipeline
from digest.backend import LocalBackend
from digest.models import IsoWeek
from digest.web import create_app
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer
from tests.fixtures.web_server import running

W02 = (IsoWeek(2018, 2),)
SHOT = Path("/tmp/digest-web-version.png")
HELP_SHOT = Path("/tmp/digest-unsubscribe-help.png")


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", ws.SECRET)


@pytest.fixture
def sent(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[tuple[Path, list[ws.Row], str]]:
    """A folder whose 2018-W02 issue was sent, and the web app serving it; base_url points at the app."""
    people = ws.rows(12)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port)
    config = ws.load(path)

    def send() -> int:
        with pipeline.open_store(config) as store:
            pipeline.fetch_all(config, store, ws.RUN_NOW)
            return pipeline.send_issue(config, store, W02, clock=ws.fixed_clock()).report.sent

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(send).result() > 0
    with running(create_app(LocalBackend(path, strict_tokens=True), title="Cyber Weekly", enable_preview=False)) as url:
        # The backend reads the config per request: the help link now leads to this server.
        text = path.read_text(encoding="utf-8").replace('base_url = "http://127.0.0.1:8025"', f'base_url = "{url}"')
        path.write_text(text, encoding="utf-8")
        yield path, people, url


def test_the_web_version_carries_no_subscriber_value(sent: tuple[Path, list[ws.Row], str]) -> None:
    _, people, url = sent
    page = httpx.get(f"{url}/issues/2018-W02/all.html")
    assert page.status_code == 200
    body = page.text
    for row in people:
        assert row.email not in body
        if len(row.name) > 3:
            assert row.name not in body and row.name.replace('"', "&quot;") not in body
    assert "/u/" not in body  # no one's unsubscribe link
    assert re.search(r"X[0-9a-f]{32}", body) is None
    assert '<p class="greeting"' in body and ">Hello,</p>" in body
    assert "as ." not in body and "subscribed to" not in body
    assert "You are reading the web version of Cyber Weekly." in body
    help_url = f"{url}/unsubscribe-help"
    assert f'href="{help_url}"' in body
    helped = httpx.get(help_url)
    assert helped.status_code == 200
    assert "How to unsubscribe from Cyber Weekly" in helped.text
    assert "Unsubscribe</strong> link at the bottom of the email" in helped.text
    assert "List-Unsubscribe" in helped.text


def test_an_unknown_issue_or_variant_has_no_web_version(sent: tuple[Path, list[ws.Row], str]) -> None:
    _, _, url = sent
    assert httpx.get(f"{url}/issues/2018-W09/all.html").status_code == 404
    assert httpx.get(f"{url}/issues/2018-W02/no-such-variant.html").status_code == 404
    assert httpx.get(f"{url}/issues/..%2F..%2Fetc/all.html").status_code == 404


@pytest.mark.browser
def test_the_web_version_in_chromium(sent: tuple[Path, list[ws.Row], str], browser: Browser) -> None:
    _, _, url = sent
    context = browser.new_context(viewport={"width": 760, "height": 1100})
    tab = context.new_page()
    tab.goto(f"{url}/issues/2018-W02/all.html")
    expect(tab.locator("p.greeting")).to_have_text("Hello,")
    expect(tab.get_by_text("You are reading the web version of Cyber Weekly.")).to_be_visible()
    tab.screenshot(path=str(SHOT), full_page=True)
    assert SHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tab.get_by_role("link", name="Unsubscribe").click()
    expect(tab).to_have_url(f"{url}/unsubscribe-help")
    expect(tab.get_by_role("heading", name="How to unsubscribe from Cyber Weekly")).to_be_visible()
    tab.screenshot(path=str(HELP_SHOT))
    context.close()
