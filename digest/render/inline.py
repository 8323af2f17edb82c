"""CSS inlining with premailer, and one canonical HTML serialisation.

Inlining runs once per variant, on rendered output that holds placeholder
tokens. It makes no network request: premailer is told not to fetch, and the
only stylesheet is the ``<style>`` block the template includes (``@import``
rules are dropped: cssutils would fetch them). Rules that
cannot be inlined (``@media``, ``:hover``) stay in a ``<style>`` block in the
head, which is how the dark-mode rules survive.

The inlined document is then written out by ``serialize``, which escapes
every text node and attribute value exactly as ``html.escape(quote=True)``
does. That is what ``placeholders.personalise`` inserts into HTML, so
filling tokens afterwards gives byte for byte what rendering with the real
values would give.
"""

from __future__ import annotations

import html
import logging
import re

from lxml import etree
from lxml import html as lxml_html
from premailer import Premailer

from digest.errors import RenderError

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


def inline_css(document: str) -> str:
    """``document`` with its ``<style>`` rules moved into ``style`` attributes."""
    try:
        inlined = Premailer(
            _drop_imports(document),
            base_url=None,
            allow_network=False,
            allow_loading_external_files=False,
            strip_important=False,  # dark-mode overrides need !important to beat inline styles
            keep_style_tags=False,  # leftover @media rules still get a <style> of their own
            remove_classes=False,  # the @media rules select by class
            disable_validation=True,
            disable_link_rewrites=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform()
    except (etree.LxmlError, ValueError) as exc:
        raise RenderError(f"cannot inline CSS: {exc}") from exc
    return serialize(inlined)


def serialize(document: str) -> str:
    """``document`` re-parsed and written with canonical escaping (see the module docstring)."""
    tree = lxml_html.document_fromstring(document)
    out: list[str] = ["<!DOCTYPE html>\n"]
    _write(tree, out)
    out.append("\n")
    return "".join(out)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _write(el: etree._Element, out: list[str]) -> None:
    if el.tag is etree.Comment:
        out.append(f"<!--{el.text or ''}-->")
    elif isinstance(el.tag, str):
        tag = el.tag
        attrs = "".join(f' {name}="{_escape(value)}"' for name, value in el.attrib.items())
        out.append(f"<{tag}{attrs}>")
        if tag not in _VOID:
            if el.text:
                out.append(el.text if tag in _RAW_TEXT else _escape(el.text))
            for child in el:
                _write(child, out)
            out.append(f"</{tag}>")
    # Processing instructions and entities do not occur in parsed HTML output.
    if el.tail:
        out.append(_escape(el.tail))
