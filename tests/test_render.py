"""Rendering: templates, escaping, sanitising, inlining, variants, clipping, goldens.

Every test here runs with outgoing connections forbidden, so a renderer that
tried to fetch a stylesheet or an image would fail loudly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import random
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import html as lxml_html

from digest import placeholders
from digest.errors import RenderError
from digest.grouping import build_issue, issue_key, weeks_between
from digest.models import Author, Entry, IsoWeek, Issue
from digest.render import EmptyVariant, Renderer, RenderSettings, sanitize_html, variant_key
from digest.render.environment import _ResourceLoader, packaged_templates, wrap
from tests.data.render.sample_entries import THEMES, TZ, sample_entries

GOLDEN = Path(__file__).parent / "golden"
# Read at import: an autouse fixture clears DIGEST_* before each test runs.
UPDATE_GOLDEN = os.environ.get("DIGEST_UPDATE_GOLDEN") == "1"
BASE_URL = "http://127.0.0.1:8025"
THEME_NAMES = tuple(t.name for t in THEMES)
URL_LINE = re.compile(r"https?://|mailto:|DIGESTx")

AWKWARD = [
    ("Zoë Ångström", "zoe@example.org"),
    ('O\'Brien "Bob"', "bob+o'brien@example.org"),
    ("<script>alert('x')</script>", "script@example.org"),
    ("Tom & Jerry", "tom&jerry@example.org"),
    ("", "nobody@example.org"),
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during rendering: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


def settings(**changes: object) -> RenderSettings:
    base = RenderSettings(title="Cyber Weekly", base_url=BASE_URL, tz=TZ, templates_dir=None, themes=THEME_NAMES)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def stable(s: RenderSettings) -> Renderer:
    """A renderer pinned to the fixed LEGACY tokens: outputs compare equal and goldens stay readable."""
    return Renderer(s, draw_tokens=lambda: placeholders.LEGACY)


def reader(name: str, email: str, unsubscribe_url: str) -> placeholders.Values:
    return placeholders.values_for(name, email, unsubscribe_url, title="Cyber Weekly")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return stable(settings())


def make_issue(
    entries: tuple[Entry, ...] | list[Entry], weeks: list[IsoWeek] | None, title: str = "Cyber Weekly"
) -> Issue:
    return build_issue(
        entries,
        title=title,
        weeks=weeks,
        themes=THEMES,
        source_themes={},
        tz=TZ,
        key=issue_key(weeks) if weeks else "all",
    )


def w02() -> Issue:
    return make_issue(sample_entries(), [IsoWeek(2018, 2)])


def whole_sample() -> Issue:
    return make_issue(sample_entries(), list(weeks_between(IsoWeek(2016, 4), IsoWeek(2018, 3))))


NASTY = (
    '<p onclick="steal()">Intro with <a href="javascript:alert(1)">a bad link</a> and '
    '<a href="/relative/page">a relative one</a>.</p>'
    "<script>document.write('owned')</script>"
    '<iframe src="https://evil.example/frame">frame text</iframe>'
    '<img src="https://tracker.example/p.gif" width="1" height="1">'
    '<img src="https://img.example/pic.png" height="2" width="300">'
    '<img src="https://img.example/chart.png" width="400">'
    "<style>body{display:none}</style><form><input name=x></form>"
)


def rich_entries() -> list[Entry]:
    when = dt.datetime(2018, 1, 10, 9, tzinfo=TZ)
    return [
        Entry(
            id="linked",
            source="Lawfare & Co",
            title="Tom & Jerry <script>alert(\"x\")</script> say 'hi' about AI",
            link="https://example.org/a?x=1&y=2",
            summary="A summary with <angle> brackets & ampersands about AI policy.",
            authors=(Author("Zoë Ångström", "Lab <X>"), Author("Bo")),
            published=when,
        ),
        Entry(
            id="content-only",
            source="Feed",
            title="Hacking report with content only",
            link="https://example.org/report",
            content=NASTY,
            published=when - dt.timedelta(hours=1),
        ),
        Entry(
            id="norms",
            source="Feed",
            title="A long piece on norms " + "and more words " * 12,
            link="https://example.org/" + "very-long-path/" * 8,
            summary=" ".join(["Internet governance norms are discussed at length here."] * 6),
            published=when - dt.timedelta(hours=2),
        ),
    ]


def rich_issue() -> Issue:
    return make_issue(rich_entries(), [IsoWeek(2018, 2)])


# -- golden files -------------------------------------------------------------


@pytest.mark.parametrize("build", [w02, whole_sample], ids=["2018-W02", "whole-sample"])
def test_golden_files(renderer: Renderer, build: object) -> None:
    issue = build()  # type: ignore[operator]
    rendered = renderer.render_variant(issue, None)
    for suffix, produced in ((".html", rendered.html), (".txt", rendered.text)):
        path = GOLDEN / f"{issue.key}{suffix}"
        if UPDATE_GOLDEN:
            path.parent.mkdir(exist_ok=True)
            path.write_text(produced, encoding="utf-8", newline="")
        assert path.read_text(encoding="utf-8") == produced, f"{path} differs; DIGEST_UPDATE_GOLDEN=1 rewrites it"
    assert rendered.subject == "Cyber Weekly — " + (
        "Week 2 · 8–14 January 2018"
        if issue.key == "2018-W02"
        else "Week 4, 2016 – Week 3, 2018 · 25 January 2016 – 21 January 2018"
    )


def test_golden_w02_content(renderer: Renderer) -> None:
    rendered = renderer.render_variant(w02(), None)
    assert "Week 2 · 8–14 January 2018" in rendered.html
    assert "Lu Chen (Consultant, United Nations)" in rendered.html
    assert f"{BASE_URL}/issues/2018-W02/all.html" in rendered.html
    assert f'href="{placeholders.LEGACY.unsubscribe_url}"' in rendered.html
    assert f'line-height:18px">{placeholders.LEGACY.footer_note}</p>' in rendered.html
    assert rendered.variant == "all"
    assert rendered.themes == ("AI & tech competition",)


# -- determinism and escaping ---------------------------------------------------


def test_rendering_is_deterministic() -> None:
    entries = list(sample_entries()) + rich_entries()
    first = stable(settings()).render_variant(make_issue(entries, None), None)
    random.Random(3).shuffle(entries)
    second = stable(settings()).render_variant(make_issue(entries, None), None)
    assert first == second


def test_html_is_escaped_and_text_is_verbatim(renderer: Renderer) -> None:
    rendered = renderer.render_variant(rich_issue(), None)
    assert "Tom &amp; Jerry &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; say &#x27;hi&#x27;" in rendered.html
    assert "<script" not in rendered.html
    assert "&lt;angle&gt; brackets &amp; ampersands" in rendered.html
    assert "Zoë Ångström (Lab &lt;X&gt;) and Bo" in rendered.html
    assert 'href="https://example.org/a?x=1&amp;y=2"' in rendered.html
    assert "Lawfare &amp; Co" in rendered.html
    text = " ".join(rendered.text.split())
    assert "Tom & Jerry <script>alert(\"x\")</script> say 'hi' about AI" in text
    assert "<angle> brackets & ampersands" in text
    assert "Zoë Ångström (Lab <X>) and Bo" in text
    assert "&amp;" not in rendered.text and "&lt;" not in rendered.text


def test_subject_is_not_escaped() -> None:
    rendered = stable(settings(title="ignored")).render_variant(
        make_issue(sample_entries(), None, title='R&D <"Weekly">'), None
    )
    assert rendered.subject.startswith('R&D <"Weekly"> — ')
    assert "<title>R&amp;D &lt;&quot;Weekly&quot;&gt; — " in rendered.html


# -- sanitising feed HTML ---------------------------------------------------------


def test_sanitize_strips_active_content() -> None:
    clean = sanitize_html(NASTY, base_url="https://example.org/post/1")
    for bad in (
        "<script",
        "owned",
        "<iframe",
        "frame text",
        "onclick",
        "javascript:",
        "<style",
        "<form",
        "<input",
        "<img",
    ):
        assert bad not in clean
    assert '<a href="https://example.org/relative/page"' in clean
    assert "Intro with" in clean


def test_sanitize_keeps_real_images_only_when_allowed() -> None:
    clean = sanitize_html(NASTY, allow_images=True, alt="Chart")
    assert "tracker.example" not in clean
    assert "pic.png" not in clean  # height 2: a tracking strip, not a picture
    assert '<img src="https://img.example/chart.png" width="400" alt="Chart">' in clean


def test_content_is_sanitised_in_the_email(renderer: Renderer) -> None:
    rendered = renderer.render_variant(rich_issue(), None)
    for bad in ("owned", "frame text", "onclick", "javascript:", "tracker.example", "<img", "display:none}"):
        assert bad not in rendered.html
    assert 'href="https://example.org/relative/page"' in rendered.html
    assert "Intro with a bad link and a relative one." in " ".join(rendered.text.split())


def test_every_image_has_alt_text() -> None:
    rendered = stable(settings(allow_images=True)).render_variant(rich_issue(), None)
    images = lxml_html.document_fromstring(rendered.html).xpath("//img")
    assert [i.get("src") for i in images] == ["https://img.example/chart.png"]
    assert all(i.get("alt") for i in images)


# -- layout, inlining, dark mode ------------------------------------------------------


def test_css_is_inlined_and_dark_mode_survives(renderer: Renderer) -> None:
    rendered = renderer.render_variant(rich_issue(), None)
    doc = lxml_html.document_fromstring(rendered.html)
    headline = doc.xpath("//h3[@class='headline']")[0]
    assert "font-family:Georgia" in headline.get("style")
    styles = "".join(doc.xpath("//style/text()"))
    assert "@media (prefers-color-scheme: dark)" in styles
    assert ".headline" in styles and "!important" in styles
    # Plain rules were inlined, not left in the <style> block.
    assert ".summary {" not in styles and ".summary{" not in styles
    container = doc.xpath("//table[contains(@class, 'container')]")[0]
    assert container.get("role") == "presentation" and container.get("width") == "600"
    assert doc.xpath("//div[@class='preheader']")[0].text_content().startswith("3 new pieces on")


def test_text_lines_fit_72_columns(renderer: Renderer) -> None:
    for issue in (rich_issue(), whole_sample()):
        text = renderer.render_variant(issue, None).text
        long_lines = [line for line in text.splitlines() if len(line) > 72 and not URL_LINE.search(line)]
        assert long_lines == []
    text = renderer.render_variant(rich_issue(), None).text
    assert "[3] https://example.org/" + "very-long-path/" * 8 in text
    assert re.search(r"about AI \[1\]", text)
    # The numbered links belong to the issue: they come before the footer, not after it.
    assert text.index("[3] https://example.org/") < text.index("\nLinks\n") + 200 < text.index("Unsubscribe: ")
    assert text.index("\nLinks\n") < text.rindex("-" * 72) < text.index("Unsubscribe: ")


def test_wrap_never_breaks_urls() -> None:
    url = "https://example.org/" + "x" * 90
    wrapped = wrap("see " + url + " for more words here", 40, indent="  ")
    assert url in wrapped.splitlines()[1]


# -- templates: errors and overrides ------------------------------------------------


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "digest.html.j2").write_text("<html>\n<body>\n{{ title }\n</body>\n", encoding="utf-8")
    with pytest.raises(RenderError) as info:
        stable(settings(templates_dir=tmp_path))
    message = str(info.value)
    assert message.startswith(f"{tmp_path}/digest.html.j2:3: ")
    assert "unexpected '}'" in message
    assert "\n" not in message


def test_syntax_error_in_a_partial_shows_at_load(tmp_path: Path) -> None:
    (tmp_path / "_entry.txt.j2").write_text("{% if entry.link %}\nno endif\n", encoding="utf-8")
    with pytest.raises(RenderError, match=r"_entry\.txt\.j2:\d+: "):
        stable(settings(templates_dir=tmp_path))


def test_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "_entry.html.j2").write_text(
        "<p>\n{{ entry.title }}\n{{ entry.no_such_field }}\n</p>\n", encoding="utf-8"
    )
    renderer = stable(settings(templates_dir=tmp_path))
    with pytest.raises(RenderError) as info:
        renderer.render_variant(w02(), None)
    message = str(info.value)
    assert message.startswith(f"{tmp_path}/_entry.html.j2:3: ")
    assert "no_such_field" in message and "\n" not in message


def test_undefined_top_level_name_in_text_template(tmp_path: Path) -> None:
    (tmp_path / "subject.txt.j2").write_text("{{ title }}\n{{ subscriber_count }}\n", encoding="utf-8")
    with pytest.raises(RenderError, match=r"subject\.txt\.j2:2: 'subscriber_count' is undefined$"):
        stable(settings(templates_dir=tmp_path)).render_variant(w02(), None)


def test_working_folder_overrides_one_file_only(tmp_path: Path, renderer: Renderer) -> None:
    (tmp_path / "_entry.html.j2").write_text(
        '<p class="mine">{{ entry.title }} / {{ entry.date }}</p>\n', encoding="utf-8"
    )
    custom = stable(settings(templates_dir=tmp_path)).render_variant(w02(), None)
    default = renderer.render_variant(w02(), None)
    assert '<p class="mine">The key to which country' in custom.html
    assert "/ 8 January 2018</p>" in custom.html
    assert 'class="headline"' not in custom.html and 'class="headline"' in default.html
    # Everything else still comes from the packaged templates.
    assert "Week 2 · 8–14 January 2018" in custom.html
    assert "@media (prefers-color-scheme: dark)" in custom.html
    assert custom.text == default.text
    assert custom.subject == default.subject


def test_missing_templates_dir_falls_back_to_packaged(tmp_path: Path, renderer: Renderer) -> None:
    alone = stable(settings(templates_dir=tmp_path / "nope"))
    assert alone.render_variant(w02(), None) == renderer.render_variant(w02(), None)


def test_resource_loader_serves_the_packaged_templates() -> None:
    root = packaged_templates()
    assert isinstance(root, Path)
    loader = _ResourceLoader(root)
    names = loader.list_templates()
    assert {"digest.html.j2", "digest.txt.j2", "subject.txt.j2", "styles.css"} <= set(names)
    source, filename, _ = loader.get_source(None, "subject.txt.j2")  # type: ignore[arg-type]
    assert source == (root / "subject.txt.j2").read_text(encoding="utf-8")
    assert filename == "templates/subject.txt.j2"


# -- placeholders: fast path equals slow path --------------------------------------------


@pytest.mark.parametrize(("name", "email"), AWKWARD, ids=[a[1] for a in AWKWARD])
def test_filled_tokens_equal_a_full_render(renderer: Renderer, name: str, email: str) -> None:
    issue = rich_issue()
    unsubscribe = f'{BASE_URL}/u/{email}?t=a&b="c"'
    values = reader(name, email, unsubscribe)
    fast = Renderer(settings()).render_variant(issue, None)  # random tokens
    mine = placeholders.personalise(fast, values)
    assert mine == placeholders.Personal(*renderer.render_full(issue, None, values))
    text = mine.text
    if name:
        assert f"Hello {name}," in text
    assert f"Unsubscribe: {unsubscribe}" in text


def test_no_token_is_left_after_filling(renderer: Renderer) -> None:
    fast = Renderer(settings()).render_variant(w02(), None)
    mine = placeholders.personalise(fast, reader("Ann", "ann@example.org", f"{BASE_URL}/u/x"))
    for part in (mine.subject, mine.html, mine.text):
        assert not any(token in part for _, token in fast.tokens.pairs())
    assert "You get this because you subscribed to Cyber Weekly as ann@example.org." in mine.html


# -- variants ----------------------------------------------------------------------------


def test_variant_key_is_stable_and_normalised() -> None:
    themes = ("Cybersecurity", "Internet governance", "Other")
    assert variant_key(None, themes) == "all"
    assert variant_key(frozenset(), themes) == "all"
    assert variant_key(frozenset(themes) | {"Unknown"}, themes) == "all"
    assert variant_key(frozenset({"Unknown"}), themes) == "none"
    key = variant_key(frozenset({"Internet governance", "Cybersecurity"}), themes)
    assert re.fullmatch(r"cybersecurity-internet-governance-[0-9a-f]{8}", key)
    assert variant_key(frozenset({"Cybersecurity", "Internet governance", "Nope"}), themes) == key


def test_each_distinct_selection_is_rendered_once(renderer: Renderer) -> None:
    issue = whole_sample()
    selections = [
        frozenset(),
        frozenset({"Cybersecurity"}),
        frozenset({"Cybersecurity", "Not a theme"}),
        frozenset({"Digital economy", "AI & tech competition"}),
        frozenset(THEME_NAMES) | {"Other"},
        frozenset({"Not a theme"}),
    ]
    variants = renderer.variants(issue, selections)
    assert len(variants) == 3
    assert set(variants) == {variant_key(s, issue.themes) for s in selections[:4]}
    cyber = variants[variant_key(frozenset({"Cybersecurity"}), issue.themes)]
    assert cyber.themes == ("Cybersecurity",)
    assert "Cybersecurity" in cyber.html and "Digital economy" not in cyber.html
    assert f"{BASE_URL}/issues/{issue.key}/{cyber.variant}.html" in cyber.html
    assert "4 new pieces" in cyber.html
    pair = variants[variant_key(frozenset({"Digital economy", "AI & tech competition"}), issue.themes)]
    assert pair.themes == ("AI & tech competition", "Digital economy")
    assert variants["all"].themes == (
        "AI & tech competition",
        "Cybersecurity",
        "Internet governance",
        "Digital economy",
        "Other",
    )


def test_a_selection_with_nothing_in_it_raises(renderer: Renderer) -> None:
    with pytest.raises(EmptyVariant, match="Digital economy"):
        renderer.render_variant(w02(), frozenset({"Digital economy"}))
    assert issubclass(EmptyVariant, RenderError)


# -- Gmail clipping -----------------------------------------------------------------------


def many_entries(n: int) -> list[Entry]:
    start = dt.datetime(2018, 1, 8, 8, tzinfo=TZ)
    return [
        Entry(
            id=f"e{i:03d}",
            source="Wire",
            title=f"Story {i:03d} on cybersecurity",
            link=f"https://example.org/story/{i}",
            summary="Cybersecurity news. " * 30,
            published=start + dt.timedelta(minutes=i),
        )
        for i in range(n)
    ]


def test_long_issue_is_cut_to_fit_gmail_clipping(caplog: pytest.LogCaptureFixture) -> None:
    issue = make_issue(many_entries(120), [IsoWeek(2018, 2)])
    limit = 60_000
    clipper = stable(settings(clip_bytes=limit))
    with caplog.at_level(logging.WARNING, logger="digest.render"):
        rendered = clipper.render_variant(issue, None)
    values = reader("Zoë", "zoe@example.org", f"{BASE_URL}/u/" + "t" * 120)
    filled = placeholders.personalise(rendered, values).html
    assert len(filled.encode("utf-8")) <= limit
    assert len(filled.encode("utf-8")) > limit * 0.8  # it kept as much as fits
    assert f'href="{BASE_URL}/u/{"t" * 120}"' in filled  # the unsubscribe link is inside the limit
    kept = filled.count('class="headline"')
    assert 0 < kept < 120
    assert f"{120 - kept} more in the web version</a>" in filled
    # The newest entries are the ones kept.
    assert "Story 119 on cybersecurity" in filled and "Story 000 on cybersecurity" not in filled
    assert rendered.text.count("* Story ") == 120
    assert any("longer than 60000 bytes" in r.getMessage() for r in caplog.records)
    assert clipper.render_full(issue, None, values)[1] == filled


def test_short_issue_is_not_cut(renderer: Renderer) -> None:
    rendered = renderer.render_variant(whole_sample(), None)
    assert "more in the web version" not in rendered.html
    assert rendered.html.count('class="headline"') == 10


def test_external_stylesheets_are_never_fetched(tmp_path: Path) -> None:
    # The autouse guard turns any connection attempt into a failure.
    (tmp_path / "styles.css").write_text(
        '@import url("https://cdn.example/import.css");\n.headline { color: #123456; }\n', encoding="utf-8"
    )
    html = (packaged_templates() / "digest.html.j2").read_text(encoding="utf-8")  # type: ignore[union-attr]
    link = '<link rel="stylesheet" href="https://cdn.example/site.css">\n</head>'
    (tmp_path / "digest.html.j2").write_text(html.replace("</head>", link, 1), encoding="utf-8")
    rendered = stable(settings(templates_dir=tmp_path)).render_variant(w02(), None)
    assert "color:#123456" in rendered.html


@pytest.mark.parametrize(
    ("summary", "shown"),
    [
        # A headline that is the whole first sentence: the summary goes on after it.
        ("China’s digital economy is a force to be reckoned with. It now leads.", "It now leads."),
        ("Is this the end? Not yet.", "Not yet."),
        # A clause or a cut headline: the summary is shown whole, never the rest of a split sentence.
        (
            "Relations in cyberspace in 2016 will be defined by three key policies: attribution, sanctions and "
            "norms, each discussed at length in what follows here. More.",
            "Relations in cyberspace in 2016 will be defined by three key policies: attribution, sanctions and "
            "norms, each discussed at length in what follows here. More.",
        ),
        ("word " * 60 + "end.", ("word " * 60 + "end.").strip()),
        # Hostile: a full stop with no space after it ends no sentence: the one sentence is the headline.
        ("Short one.Then glued on.", ""),
    ],
    ids=["sentence", "question", "clause", "cut", "glued"],
)
def test_a_derived_headline_never_splits_a_sentence(renderer: Renderer, summary: str, shown: str) -> None:
    from digest.sources.text import derive_title

    title = derive_title(summary)
    entry = Entry(
        id="derived",
        source="Listing",
        title=title,
        summary=summary,
        published=dt.datetime(2018, 1, 10, 9, tzinfo=TZ),
        title_derived=True,
    )
    html = renderer.render_variant(make_issue([entry], [IsoWeek(2018, 2)]), None).html
    doc = lxml_html.fromstring(html)
    assert [h.text_content() for h in doc.xpath("//h3[@class='headline']")] == [title]
    assert [p.text_content() for p in doc.xpath("//p[@class='summary']")] == ([shown] if shown else [])
