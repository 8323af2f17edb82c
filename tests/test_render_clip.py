"""Gmail clipping: the HTML a subscriber receives stays under 100,000 bytes, the unsubscribe link in the first 90,000.

What counts is the HTML part of the finished message, decoded, with a real
per-subscriber unsubscribe URL filled in (the longest kind compose accepts),
so every check here goes through ``MessageTemplate.personalise``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path

import pytest

from digest import placeholders, tokens
from digest.compose import MessageTemplate, Recipient
from digest.compose.headers import MAX_NAME
from digest.compose.message import MAX_URL
from digest.errors import RenderError
from digest.models import Entry, IsoWeek, Rendered, TokenSet
from digest.render import Renderer
from digest.render.environment import packaged_templates
from digest.render.renderer import FILLED_MAX
from tests.test_compose import make_settings, parse
from tests.test_render import BASE_URL, TZ, make_issue, many_entries, settings

CLIP = 100_000
LINK_WITHIN = 90_000
LIST_ID = "Cyber Weekly <cyber-weekly.example.org>"
EMAIL = "ann.o'brien+digest@example.org"


def real_url() -> str:
    return f"{BASE_URL}/u/{tokens.make_token('k' * 32, EMAIL, LIST_ID)}"


#: A subscriber whose values grow the most when escaped: quotes in the name,
#: ampersands in an unsubscribe URL as long as compose takes.
WORST = Recipient(EMAIL, '"' * MAX_NAME, (real_url() + "?" + "&a=b" * 300)[:MAX_URL])
USUAL = Recipient(EMAIL, "Ann O'Brien", real_url())


def received_html(rendered: Rendered, recipient: Recipient) -> bytes:
    """The decoded HTML part of the message ``recipient`` gets, as UTF-8 bytes."""
    data = MessageTemplate.build(rendered, make_settings(list_id=LIST_ID)).personalise(recipient).data
    part = parse(data).get_body(("html",))
    assert part is not None
    return part.get_content().replace("\r\n", "\n").encode("utf-8")


def assert_within_gmail(html: bytes, recipient: Recipient) -> None:
    assert len(html) < CLIP
    href = f'href="{recipient.unsubscribe_url.replace("&", "&amp;")}"'.encode()
    start = html.find(href)
    assert start >= 0, "the unsubscribe link is missing"
    assert html.find(b"</a>", start) + len(b"</a>") <= LINK_WITHIN


def entry(i: int, **fields: object) -> Entry:
    base = Entry(
        id=f"big{i}",
        source="Wire",
        title=f"Big story {i}",
        link=f"https://example.org/big/{i}",
        summary="Cybersecurity news.",
        published=dt.datetime(2018, 1, 9, 8, tzinfo=TZ) + dt.timedelta(minutes=i),
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def test_the_token_bounds_cover_what_compose_accepts() -> None:
    # The footer note's bound is worked out from the configured title (see Renderer._filled_size).
    assert set(FILLED_MAX) | {"footer_note"} == {key for key, _ in TokenSet.fresh().pairs()}
    assert FILLED_MAX["name"] >= MAX_NAME * 6 and FILLED_MAX["unsubscribe_url"] >= MAX_URL * 6
    assert FILLED_MAX["email"] >= 254 * 6
    assert FILLED_MAX["greeting"] >= len(placeholders.greeting('"' * MAX_NAME).replace('"', "&quot;"))


@pytest.mark.parametrize("recipient", [USUAL, WORST], ids=["usual", "worst"])
def test_a_long_issue_fits_for_every_subscriber(recipient: Recipient, caplog: pytest.LogCaptureFixture) -> None:
    issue = make_issue(many_entries(400), [IsoWeek(2018, 2)])
    with caplog.at_level(logging.WARNING, logger="digest.render"):
        rendered = Renderer(settings()).render_variant(issue, None)
    html = received_html(rendered, recipient)
    assert_within_gmail(html, recipient)
    assert b"more in the web version" in html
    assert len(html) > 60_000  # it still keeps what fits
    assert any("longer than 100000 bytes" in r.getMessage() for r in caplog.records)
    assert rendered.text.count("* Story ") == 400  # the text part is never cut


@pytest.mark.parametrize(
    "big",
    [
        {"summary": "Sandworm. " * 30_000},
        {"title": "Headline " * 10_000},
        {"link": "https://example.org/" + "p" * 120_000},
        {"summary": "网络安全。" * 40_000},
    ],
    ids=["summary", "title", "link", "non-ascii"],
)
def test_one_huge_entry_cannot_push_the_link_out(big: dict[str, str]) -> None:
    entries = [*many_entries(5), entry(1, **big)]
    issue = make_issue(entries, [IsoWeek(2018, 2)])
    rendered = Renderer(settings()).render_variant(issue, None)
    for recipient in (USUAL, WORST):
        html = received_html(rendered, recipient)
        assert_within_gmail(html, recipient)
        assert b"more in the web version" in html
    assert rendered.text.count("* ") >= 6


def test_an_issue_that_fits_is_left_whole() -> None:
    issue = make_issue(many_entries(20), [IsoWeek(2018, 2)])
    rendered = Renderer(settings()).render_variant(issue, None)
    html = received_html(rendered, WORST)
    assert_within_gmail(html, WORST)
    assert b"more in the web version" not in html and html.count(b'class="headline"') == 20


def test_a_template_too_big_on_its_own_is_a_render_error(tmp_path: Path) -> None:
    page = (packaged_templates() / "digest.html.j2").read_text(encoding="utf-8")  # type: ignore[union-attr]
    padding = "<p>" + "Boilerplate. " * 8_000 + "</p>\n"
    (tmp_path / "digest.html.j2").write_text(page.replace("<body", padding + "<body", 1), encoding="utf-8")
    renderer = Renderer(settings(templates_dir=tmp_path))
    with pytest.raises(RenderError, match="over 100000 bytes"):
        renderer.render_variant(make_issue(many_entries(3), [IsoWeek(2018, 2)]), None)
