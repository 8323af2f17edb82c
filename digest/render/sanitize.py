"""Feed HTML made safe for an email, and shortened to a teaser.

Feed ``content`` is untrusted: it goes through nh3 with a small allow-list
(no script, style, iframe, forms or event handlers; only http, https and
mailto links) before any template sees it. Images are dropped unless the
digest allows them, and tracking pixels (1x1 and the like) always are.
"""

from __future__ import annotations

import re

import nh3
from lxml import etree
from lxml import html as lxml_html

from digest import urls
from digest.errors import InvalidURL

URL_SCHEMES = frozenset({"http", "https", "mailto"})
_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "cite", "code", "em", "h3", "h4", "h5", "h6",
        "i", "li", "ol", "p", "pre", "q", "s", "small", "strong", "sub", "sup", "u", "ul",
    }
)  # fmt: skip
# Dropped together with everything inside them, not just unwrapped.
_CLEAN_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math", "form", "select"}
)
_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}, "img": {"src", "alt", "width", "height"}}
_PIXEL = 2  # an image this small in either direction is a tracker, not a picture
_BLOCKS = ("p", "br", "li", "blockquote", "pre", "h3", "h4", "h5", "h6", "ul", "ol", "img")
_SPACE = re.compile(r"\s+")


def _dimension(value: str | None) -> int | None:
    if value is None:
        return None
    m = re.match(r"\s*(\d+)", value)
    return int(m.group(1)) if m else None


def _fragment(markup: str) -> lxml_html.HtmlElement:
    return lxml_html.fragment_fromstring(markup, create_parent="div")


def _serialize_children(root: lxml_html.HtmlElement) -> str:
    parts = [root.text or ""] if root.text else []
    parts.extend(etree.tostring(child, encoding="unicode", method="html") for child in root)
    return "".join(parts)


def sanitize_html(markup: str, *, base_url: str | None = None, allow_images: bool = False, alt: str = "") -> str:
    """``markup`` reduced to a safe fragment for an email.

    Relative links are resolved against ``base_url`` (the entry's link) and
    dropped when they cannot be. Kept images get ``alt`` when they have none.
    """
    if not markup.strip():
        return ""
    tags = set(_TAGS) | ({"img"} if allow_images else set())
    cleaned = nh3.clean(
        markup,
        tags=tags,
        clean_content_tags=set(_CLEAN_CONTENT),
        attributes={k: set(v) for k, v in _ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        strip_comments=True,
        link_rel="noopener noreferrer",
    )
    if not cleaned.strip():
        return ""
    root = _fragment(cleaned)
    for img in list(root.iter("img")):
        width, height = _dimension(img.get("width")), _dimension(img.get("height"))
        tiny = (width is not None and width <= _PIXEL) or (height is not None and height <= _PIXEL)
        src = _absolute(img.get("src"), base_url)
        if tiny or src is None:
            img.drop_tree()
            continue
        img.set("src", src)
        if not img.get("alt"):
            img.set("alt", alt or "Image")
    for a in list(root.iter("a")):
        href = _absolute(a.get("href"), base_url)
        if href is None:
            a.drop_tag()  # a link that goes nowhere safe is just its text
        else:
            a.set("href", href)
    return _serialize_children(root).strip()


def _absolute(url: str | None, base_url: str | None) -> str | None:
    if not url or not url.strip():
        return None
    try:
        parsed = urls.parse(urls.join(base_url or "", url))
    except InvalidURL:
        return None
    return parsed.text if parsed.scheme in URL_SCHEMES else None


def truncate_html(fragment: str, limit: int) -> str:
    """``fragment`` cut after about ``limit`` characters of text, at a word, with "…"."""
    if not fragment:
        return ""
    root = _fragment(fragment)
    if len(_SPACE.sub(" ", root.text_content()).strip()) <= limit:
        return fragment
    budget = limit
    cut = False
    doomed: list[lxml_html.HtmlElement] = []
    # Walk in document order: an element's text on "start", its tail on "end".
    for event, el in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            if cut:
                doomed.append(el)
                continue
            value = el.text
        else:
            if el is root or (doomed and el in doomed):
                continue
            if cut:
                el.tail = None
                continue
            value = el.tail
        if not value:
            continue
        if len(value) >= budget:
            value, cut = _cut_words(value, budget) + "…", True
        budget -= len(value)
        if event == "start":
            el.text = value
        else:
            el.tail = value
    for el in doomed:
        parent = el.getparent()
        if parent is not None:
            parent.remove(el)  # the tail goes with it: it is past the cut
    return _serialize_children(root).strip()


def _cut_words(text: str, budget: int) -> str:
    head = text[:budget]
    if " " in head and not text[budget : budget + 1].isspace():
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ,;:.-–—")


def html_to_text(fragment: str) -> str:
    """The words of a sanitised fragment, whitespace collapsed."""
    if not fragment:
        return ""
    root = _fragment(fragment)
    for el in root.iter(*_BLOCKS):
        el.tail = " " + (el.tail or "")
    return _SPACE.sub(" ", root.text_content()).strip()
