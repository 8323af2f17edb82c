"""CSS inlining: the fast path gives byte for byte what one plain premailer call per variant gave.

``bench.render.reference_renderer`` renders on the path as it was before the
inliner kept what every variant shares (one ``Premailer`` per document,
textwrap on every call; the bench measures it as the baseline): every
variant, web version and clipped variant must come out identical.
``match.Index`` is checked against lxml's ``CSSSelector`` on its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from lxml import html as lxml_html
from lxml.cssselect import CSSSelector
from markupsafe import Markup

from bench import render as bench_render
from bench.render import reference_inline, reference_renderer, reference_wrap
from digest import placeholders
from digest.models import Author, Entry, IsoWeek, Issue, Section
from digest.render import Renderer, RenderSettings, match, variant_key
from digest.render.environment import wrap
from digest.render.inline import SHEETS_KEPT, Inliner, inline_css

WEEK = IsoWeek(2018, 2)
THEMES = tuple(f"Theme {c}" for c in "ABCDEFGHIJ")


HOSTILE_TITLES = (
    "body { display: none } .entry { color: red !important } @media screen { .title { x: y } }",
    "<style>.headline-link { color: #f00 }</style> and </style><style>* { margin: 0 }",
    "Zoë Ångström — “quotes” ‘single’ عربى עברית 🦆 e\u0301 \u202eevil\u202c",
    'O\'Brien "Bob" & <b>bold</b> {{ name }} {% if x %} DIGESTxNAME',
    "word " * 400,
    "@import url(https://evil.example/x.css); .toc-link{}",
    "a\tb\nc\rd\x0ce",
    "& an ampersand first, nothing else to escape",
    '"quoted first, nothing else',
)
HOSTILE_CONTENT = (
    '<p class="content summary" style="color: red; background-color: #abc; width: 10px">styled</p>'
    "<style>.content p { color: blue }</style><p>para <a href='https://example.org/x?a=1&b=2'>link</a></p>"
    '<div style="float: left"><img src="https://img.example/p.png" width="300" style="float:right"></div>'
)


def entry(theme: int, j: int) -> Entry:
    nasty = HOSTILE_TITLES[(theme + j) % len(HOSTILE_TITLES)]
    content_only = (theme + j) % 4 == 0  # no summary: the sanitised content is shown instead
    return Entry(
        id=f"e{theme}-{j}",
        source=f"Source {theme % 3} </style> & co",
        title=f"{nasty} #{theme}.{j}",
        link=f"https://example.org/{theme}/{j}?q=<x>&r='y'",
        summary="" if content_only else f"{nasty} " * (1 + j) + "ends here.",
        content=HOSTILE_CONTENT if content_only else "",
        authors=(Author(f"Analyst {j} “Ünïcode” <Smith>", "Institute & Lab"),),
        published=dt.datetime(2018, 1, 8, 6, tzinfo=dt.UTC) + dt.timedelta(hours=theme * 3 + j),
    )


def ten_theme_issue() -> Issue:
    sections = tuple(Section(name, WEEK, tuple(entry(t, j) for j in range(3))) for t, name in enumerate(THEMES))
    return Issue("2018-W02", "Hostile Weekly <style>", (WEEK,), sections)


def selections(count: int) -> list[frozenset[str]]:
    every = [frozenset(c) for size in range(1, len(THEMES) + 1) for c in itertools.combinations(THEMES, size)]
    random.Random(12).shuffle(every)
    return every[:count]


def pair(**changes: object) -> tuple[Renderer, Renderer]:
    base = RenderSettings(
        title="Hostile Weekly", base_url="http://127.0.0.1:8025", tz="UTC", templates_dir=None, themes=THEMES
    )
    s = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    return (
        Renderer(s, draw_tokens=lambda: placeholders.LEGACY),
        reference_renderer(s, draw_tokens=lambda: placeholders.LEGACY),
    )


def test_variants_are_byte_identical_to_the_reference_path() -> None:
    issue = ten_theme_issue()
    fast, reference = pair(allow_images=True)
    chosen = [None, *selections(40)]
    got = fast.variants(issue, [c or frozenset() for c in chosen])
    want = reference.variants(issue, [c or frozenset() for c in chosen])
    assert len(got) == len({variant_key(c, issue.themes) for c in chosen}) > 35
    assert got.keys() == want.keys()
    for key, rendered in got.items():
        assert rendered.html == want[key].html, key
        assert rendered.text == want[key].text, key
        assert rendered.subject == want[key].subject, key
        assert 'style="' in rendered.html  # still inlined
    # The hostile title's "<style>" stayed text: only the template's leftover @media block is a <style>.
    for rendered in got.values():
        assert len(lxml_html.document_fromstring(rendered.html).xpath("//style")) == 1
        assert "&lt;style&gt;.headline-link" in rendered.html or "Theme A" not in rendered.themes


def test_web_versions_and_full_renders_are_byte_identical() -> None:
    issue = ten_theme_issue()
    fast, reference = pair()
    values = placeholders.values_for('Zoë "<b>"', "zoe@example.org", "http://127.0.0.1/u?t=1&x=2", title="T")
    for selection in selections(6):
        assert fast.render_web(issue, selection, dict(values.by_key())) == reference.render_web(
            issue, selection, dict(values.by_key())
        )
        assert fast.render_full(issue, selection, values) == reference.render_full(issue, selection, values)


def test_clipped_variants_are_byte_identical() -> None:
    issue = ten_theme_issue()
    # Small bounds: every variant is cut to fit, so each renders and inlines several times.
    fast, reference = pair(clip_bytes=45_000, unsubscribe_within=40_000)
    chosen = selections(12)
    got = fast.variants(issue, chosen)
    want = reference.variants(issue, chosen)
    assert any("more in the web version" in r.html for r in got.values())
    assert {k: (r.html, r.text, r.subject) for k, r in got.items()} == {
        k: (r.html, r.text, r.subject) for k, r in want.items()
    }


CSS = """
body { margin: 0 }
TD { color: #111 }
.a { color: red; width: 20px }
.b { background-color: #abc; text-align: center }
p.a { font-size: 13px }
.a.b { font-weight: bold }
.a .b { padding: 1px }
div .a p { margin: 2px }
#one { color: green }
[title] { border: 1px solid }
.a > p { line-height: 3px }
p + p { text-indent: 4px }
li:first-child { color: navy }
li:last-child { vertical-align: top }
a:hover { color: pink }
.x-y_z { height: 7px }
.unset { color: unset }
.imp { color: red !important }
img.f { float: left }
@media (max-width: 600px) { .a { color: blue } }
"""
BODY = """
<div class="a"><p class="b">one</p><p id="one" title="t">two</p><p>three</p></div>
<div class="  a\tb\n"><span class="b"><p>deep</p></span></div>
<div class="a\x0cb">form feed is not a space for XPath</div>
<table><tr><td class="A">upper</td><td class="a" style="color: black; margin: 0 !important">own</td></tr></table>
<ul><li>first</li><li class="imp" style="color: green">middle</li><li>last</li></ul>
<p class="x-y_z unset">names</p><a href="https://example.org/?a=1&amp;b=2" class="a">link</a>
<img class="f" src="https://img.example/p.png" style="border: 0">
<!-- a comment <p class="a"> --><p class="a b">both</p>
"""


def document(css: str = CSS, body: str = BODY, extra_head: str = "") -> str:
    return f"<!DOCTYPE html><html><head><style>{css}</style>{extra_head}</head><body>{body}</body></html>"


@pytest.mark.parametrize(
    "doc",
    [
        document(),
        document(extra_head='<style media="print">.a { color: cyan }</style><style>.b { color: olive }</style>'),
        document(extra_head='<style data-premailer="ignore">.a { color: cyan }</style>'),
        document(css=""),
        "<p class='a'>no html, no head, no style</p>",
        document().replace("<head>", "<head><style>@import url(https://evil.example/x.css); .a{x:y}</style>"),
        document(body="<p class='a'>" + "é" * 5000 + "</p>" * 3),
    ],
)
def test_inliner_matches_premailer_on_every_kind_of_selector(doc: str) -> None:
    inliner = Inliner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = reference_inline(doc)
        assert inliner.inline(doc) == want
        assert inliner.inline(doc) == want  # again, from what the first call remembered
        assert inline_css(doc) == want


def test_one_inliner_serves_documents_of_different_shapes_and_stylesheets() -> None:
    inliner = Inliner()
    bodies = [BODY, "<p class='a'>only</p>", BODY.replace("class=", "data-class="), "<div class='b a'><p>x</p></div>"]
    # More stylesheets than the inliner keeps: it starts over, and stays right.
    sheets = [CSS.replace("20px", f"{n}px") for n in range(SHEETS_KEPT + 3)]
    for n, css in enumerate(sheets):
        doc = document(css=css, body=bodies[n % len(bodies)])
        assert inliner.inline(doc) == reference_inline(doc), n


@pytest.mark.parametrize(
    ("selector", "compounds"),
    [
        ("td", (("td", ()),)),
        (".toc-link", ((None, ("toc-link",)),)),
        ("p.a.b", (("p", ("a", "b")),)),
        (".content a", ((None, ("content",)), ("a", ()))),
        ("div .a_b p", (("div", ()), (None, ("a_b",)), ("p", ()))),
        ("#id", None),
        ("[title]", None),
        (".a > p", None),
        ("p + p", None),
        ("li:first-child", None),
        (".a  p", None),  # two spaces: not what cssutils writes; CSSSelector decides
        (".1a", None),
        (".é", None),
        ("*", None),
        ("a.", None),
        ("", None),
        ("ns|p", None),
    ],
)
def test_read_takes_only_the_selectors_it_can_answer_exactly(
    selector: str, compounds: tuple[match.Compound, ...] | None
) -> None:
    assert match.read(selector) == compounds


TAGS = ("div", "p", "span", "td")
NAMES = ("a", "A", "b", "c-d")
# XPath's normalize-space knows only the first four; the others are part of a class name to it.
SPACES = (" ", "\t", "\n", "\r", "  ", "\x0c", "\x0b", "\xa0", "\u2003")


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> str:
    children = draw(st.lists(trees(depth + 1), max_size=3)) if depth < 3 else []
    tag = draw(st.sampled_from(TAGS))
    names = draw(st.lists(st.sampled_from(NAMES), max_size=3))
    gaps = draw(st.lists(st.sampled_from(SPACES), min_size=len(names) + 1, max_size=len(names) + 1))
    cls = "".join(g + n for g, n in zip(gaps, names, strict=False)) + gaps[-1]
    attr = f' class="{cls}"' if draw(st.booleans()) else ""
    return f"<{tag}{attr}>{''.join(children)}</{tag}>"


compound = st.builds(
    lambda tag, names: (tag or "") + "".join(f".{n}" for n in names) or "p",
    st.sampled_from((None, *TAGS)),
    st.lists(st.sampled_from(NAMES), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(trees(), st.lists(compound, min_size=1, max_size=3))
def test_index_selects_what_cssselector_selects(body: str, parts: list[str]) -> None:
    page = etree.fromstring(f"<html><body>{body}</body></html>", etree.HTMLParser())
    selector = " ".join(parts)
    assert match.read(selector) is not None
    assert match.Index(page).select(selector) == CSSSelector(selector)(page)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        "word " * 200,
        "para one\n\npara two\n\n\n\nthree",
        "https://example.org/" + "x" * 200,
        "é\u202e🦆 " * 40,
    ],
)
def test_wrap_gives_what_textwrap_gave(text: str) -> None:
    for args in ((), (40,), (72, "  ", "* ")):
        assert wrap(text, *args) == reference_wrap(text, *args)
        assert wrap(text, *args) == reference_wrap(text, *args)  # remembered
        assert wrap(Markup(text), *args) == reference_wrap(text, *args)


def test_the_bench_times_both_paths() -> None:
    fast, reference = pair()
    assert type(fast._inliner) is Inliner and type(reference._inliner) is not Inliner
    for path in (False, True):
        seconds, count = bench_render.time_variants(4, reference=path)
        assert count == 4 and seconds > 0
