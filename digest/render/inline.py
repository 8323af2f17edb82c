"""CSS inlining with premailer, and one canonical HTML serialisation.

Inlining runs once per variant, on rendered output that holds placeholder
tokens. It makes no network request: premailer is told not to fetch, and the
only stylesheet is the ``<style>`` block the template includes (``@import``
rules are dropped: cssutils would fetch them). Rules that
cannot be inlined (``@media``, ``:hover``) stay in a ``<style>`` block in the
head, which is how the dark-mode rules survive.

An ``Inliner`` (one per ``Renderer``) inlines many documents that share
their stylesheet, the variants of an issue: what depends on the CSS alone
(premailer's rule list, the leftover ``<style>`` text, merged styles) is
worked out once, and selectors are answered from one index of each
document (``match``). The output is byte for byte what one plain
``Premailer(...).transform()`` per document gives (tests/test_render_inline.py).

The inlined document is then written out by ``serialize``, which escapes
every text node and attribute value exactly as ``html.escape(quote=True)``
does. That is what ``placeholders.personalise`` inserts into HTML, so
filling tokens afterwards gives byte for byte what rendering with the real
values would give.
"""

from __future__ import annotations

import html
import logging
import operator
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from lxml import html as lxml_html
from premailer import Premailer
from premailer import premailer as pm
from premailer.merge_style import csstext_to_pairs, merge_styles

from digest.errors import RenderError
from digest.render import match

_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
_RAW_TEXT = frozenset({"script", "style"})
_STYLE_BLOCK = re.compile(r"(<style\b[^>]*>)(.*?)(</style\s*>)", re.DOTALL | re.IGNORECASE)
_IMPORT = re.compile(r"@import\b[^;]*;?", re.IGNORECASE)
_SPECIAL = re.compile("[&<>\"']")

log = logging.getLogger(__name__)


def _drop_imports(document: str) -> str:
    # cssutils fetches @import targets while parsing, whatever premailer is
    # told; email clients ignore @import anyway.
    def clean(m: re.Match[str]) -> str:
        css, count = _IMPORT.subn("", m.group(2))
        if count:
            log.warning("dropped %d @import rule(s) from the template CSS: emails cannot load them", count)
        return m.group(1) + css + m.group(3)

    return _STYLE_BLOCK.sub(clean, document)


#: premailer's options for every digest email (the same for every variant).
_OPTIONS: dict[str, Any] = {
    "base_url": None,
    "allow_network": False,
    "allow_loading_external_files": False,
    "strip_important": False,  # dark-mode overrides need !important to beat inline styles
    "keep_style_tags": False,  # leftover @media rules still get a <style> of their own
    "remove_classes": False,  # the @media rules select by class
    "disable_validation": True,
    "disable_link_rewrites": True,
    "cssutils_logging_level": logging.CRITICAL,
}
#: How many stylesheets, and merged styles, an ``Inliner`` remembers (a template has one or two
#: stylesheets and a few hundred distinct merged styles; bounded all the same).
SHEETS_KEPT = 32
STYLES_KEPT = 4096


class _Leftover(list[Any]):
    """The rules of a stylesheet that cannot be inlined, with their CSS text written once."""

    css: str = ""


@dataclass(slots=True)
class _Memo:
    """What inlining one document teaches about the next: all of it depends on the CSS alone.

    ``sheets``: a stylesheet's inlinable rules and its leftover rules, by
    (CSS text, index of its ``<style>``). ``merged``: an element's final
    ``style`` by (its own style, the declarations of the rules selecting it
    in order, their pseudo-classes). ``basic``: the HTML attributes premailer
    derives from a final style (``bgcolor``, ``width``, ``align``...).
    """

    sheets: dict[tuple[str | None, int], tuple[tuple[Any, ...], _Leftover]] = field(default_factory=dict)
    merged: dict[tuple[str, tuple[str, ...], tuple[str, ...]], str] = field(default_factory=dict)
    basic: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


def _remember(memo: dict[Any, Any], key: Any, value: Any, most: int) -> None:
    if len(memo) >= most:
        memo.clear()  # CSS that changes with every document: start over rather than grow
    memo[key] = value


class _Premailer(Premailer):  # type: ignore[misc]
    """premailer with digest's options, its stylesheets' rules built once, its selectors answered by an index.

    premailer turns every rule of a stylesheet back into text through
    cssutils, and runs an XPath query over the whole document for every
    rule, for each document it inlines; those were most of the time of a
    variant. ``transform`` is premailer's own (3.10) for ``_OPTIONS``, step
    for step, except that what depends on the CSS alone comes from a
    ``_Memo`` once known, and ``match.Index`` says which elements a
    selector selects.
    """

    def __init__(self, document: str, memo: _Memo) -> None:
        super().__init__(document, **_OPTIONS)
        self._memo = memo

    def _parse_style_rules(self, css_body: str | None, ruleset_index: int) -> tuple[list[Any], _Leftover]:
        key = (css_body, ruleset_index)
        known = self._memo.sheets.get(key)
        if known is None:
            rules, leftover = super()._parse_style_rules(css_body, ruleset_index)
            kept = _Leftover(leftover)
            if leftover:
                kept.css = super()._css_rules_to_string(leftover)
            known = (tuple(rules), kept)
            _remember(self._memo.sheets, key, known, SHEETS_KEPT)
        rules_kept, leftover_kept = known
        return list(rules_kept), leftover_kept

    def _css_rules_to_string(self, rules: list[Any]) -> str:
        if isinstance(rules, _Leftover):
            return rules.css
        return str(super()._css_rules_to_string(rules))

    def transform(self) -> str:  # type: ignore[override]
        """The inlined document, as ``Premailer.transform()`` writes it."""
        stripped = self.html.strip()
        tree = etree.fromstring(stripped, etree.HTMLParser()).getroottree()
        page = tree.getroot()
        root = tree if stripped.startswith(tree.docinfo.doctype) else page
        pm.get_or_create_head(tree)
        rules: list[tuple[tuple[int, ...], str, str]] = []
        for index, element in enumerate(_style_elements(page, self.attribute_name)):
            these_rules, these_leftover = self._parse_style_rules(element.text, index)
            rules.extend(these_rules)
            if these_leftover:
                element.text = self._css_rules_to_string(these_leftover)
            else:
                element.getparent().remove(element)
        rules.sort(key=operator.itemgetter(0))
        found = match.Index(page)
        # id(element) -> (element, the declarations of the rules selecting it, their pseudo-classes)
        elements: dict[int, tuple[etree._Element, list[str], list[str]]] = {}
        for _, selector, style in rules:
            new_selector, class_ = selector, ""
            if ":" in selector:
                new_selector, class_ = re.split(":", selector, maxsplit=1)
                class_ = f":{class_}"
            if class_ in pm.FILTER_PSEUDOSELECTORS or class_.startswith(":nth-child"):
                class_ = ""
            else:
                selector = new_selector
            for item in found.select(selector):
                _, styles, classes = elements.setdefault(id(item), (item, [], []))
                styles.append(style)
                classes.append(class_)
        for item, styles, classes in elements.values():
            final_style = self._merged(item.attrib.get("style", ""), styles, classes)
            if final_style:
                item.attrib["style"] = final_style
            for name, value in self._basic(final_style):
                item.attrib[name] = value
        for item in page.xpath("//img[@style]"):
            image_css = pm.cssutils.parseStyle(item.attrib["style"])
            if image_css.float == "right":
                item.attrib["align"] = "right"
            elif image_css.float == "left":
                item.attrib["align"] = "left"
        return str(etree.tostring(root, method="html", pretty_print=True, encoding="utf-8").decode("utf-8"))

    def _merged(self, own: str, styles: list[str], classes: list[str]) -> str:
        """premailer's ``merge_styles`` of an element's own style and its rules' declarations."""
        key = (own, tuple(styles), tuple(classes))
        known = self._memo.merged.get(key)
        if known is None:
            pairs = [csstext_to_pairs(style, validate=False) for style in styles]
            known = str(merge_styles(own, pairs, classes, remove_unset_properties=True))
            _remember(self._memo.merged, key, known, STYLES_KEPT)
        return known

    def _basic(self, final_style: str) -> tuple[tuple[str, str], ...]:
        """What ``_style_to_basic_html_attributes(element, final_style, force=True)`` sets, in order."""
        known = self._memo.basic.get(final_style)
        if known is None:
            # With force=True and no attribute disabled it sets every one it derives, whatever is there.
            scratch = etree.Element("scratch")
            self._style_to_basic_html_attributes(scratch, final_style, force=True)
            known = tuple(scratch.attrib.items())
            _remember(self._memo.basic, final_style, known, STYLES_KEPT)
        return known


def _style_elements(page: etree._Element, attribute: str) -> Iterator[etree._Element]:
    """The ``<style>`` elements premailer reads, in document order (``media`` all or screen, not ignored)."""
    for element in pm._create_cssselector("style")(page):
        media = element.attrib.get("media")
        if media and media not in ("all", "screen"):
            continue
        marker = element.attrib.get(attribute)
        if marker == "ignore":
            del element.attrib[attribute]
            continue
        if marker:
            warnings.warn(f"Unrecognized {attribute} attribute ({marker!r})", stacklevel=2)
        yield element


class Inliner:
    """Inlines the CSS of many documents that share their stylesheets (the variants of an issue).

    Gives exactly what one ``Premailer(...).transform()`` per document with
    ``_OPTIONS`` gives, then ``serialize``; only the work that is the same for
    every document is done once.
    """

    def __init__(self) -> None:
        self._memo = _Memo()

    def inline(self, document: str) -> str:
        """``document`` with its ``<style>`` rules moved into ``style`` attributes."""
        try:
            inlined = _Premailer(_drop_imports(document), self._memo).transform()
        except (etree.LxmlError, ValueError) as exc:
            raise RenderError(f"cannot inline CSS: {exc}") from exc
        return serialize(inlined)


def inline_css(document: str) -> str:
    """``document`` with its ``<style>`` rules moved into ``style`` attributes (one document)."""
    return Inliner().inline(document)


def serialize(document: str) -> str:
    """``document`` re-parsed and written with canonical escaping (see the module docstring)."""
    tree = lxml_html.document_fromstring(document)
    out: list[str] = ["<!DOCTYPE html>\n"]
    _write(tree, out)
    out.append("\n")
    return "".join(out)


def _escape(text: str) -> str:
    # Most text nodes hold nothing to escape; the search is cheaper than html.escape's five passes.
    return html.escape(text, quote=True) if _SPECIAL.search(text) else text


def _write(el: etree._Element, out: list[str]) -> None:
    # Each .tag/.text/.tail is a fresh string from lxml: read each once.
    tag = el.tag
    if tag is etree.Comment:
        out.append(f"<!--{el.text or ''}-->")
    elif isinstance(tag, str):
        attrs = "".join([f' {name}="{_escape(value)}"' for name, value in el.items()])
        out.append(f"<{tag}{attrs}>")
        if tag not in _VOID:
            text = el.text
            if text:
                out.append(text if tag in _RAW_TEXT else _escape(text))
            for child in el:
                _write(child, out)
            out.append(f"</{tag}>")
    # Processing instructions and entities do not occur in parsed HTML output.
    tail = el.tail
    if tail:
        out.append(_escape(tail))
