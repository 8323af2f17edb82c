"""Which elements of a parsed document a CSS selector selects, from one index of the document.

premailer asks lxml's ``CSSSelector`` (an XPath query over the whole
document) once for every rule; for the class selectors of an email's
stylesheet that was most of the time left in inlining a variant. ``Index``
walks the document once and answers the selectors it can read exactly —
type and class selectors (``td``, ``.toc-link``, ``p.note``) and chains of
them joined by spaces (``.content a``) — with the elements the XPath query
would give, in document order. Every other selector (ids, attributes,
pseudo-classes, ``>``, ``+``, anything unusual) goes to ``CSSSelector``
itself, as premailer would have done.
"""

from __future__ import annotations

import functools
import re

from lxml import etree
from premailer.premailer import _create_cssselector

_IDENT = r"[A-Za-z_][A-Za-z0-9_-]*"
_COMPOUND = re.compile(rf"(?P<tag>{_IDENT})?(?P<classes>(?:\.{_IDENT})*)", re.ASCII)
# XPath's normalize-space, which cssselect's class test uses, knows only these four.
_XPATH_SPACE = re.compile(r"[ \t\n\r]+")

#: One compound selector: its element name (``None``: any) and its class names.
Compound = tuple[str | None, tuple[str, ...]]


@functools.lru_cache(maxsize=1024)
def read(selector: str) -> tuple[Compound, ...] | None:
    """``selector`` as compounds joined by descendant combinators, or ``None`` when it is anything else."""
    compounds: list[Compound] = []
    for part in selector.split(" "):
        m = _COMPOUND.fullmatch(part)
        if not part or m is None:
            return None
        compounds.append((m["tag"], tuple(m["classes"].split(".")[1:])))
    return tuple(compounds)


class Index:
    """The elements of ``page`` (itself included) by element name and by class name."""

    def __init__(self, page: etree._Element) -> None:
        self.page = page
        self._by_tag: dict[str, list[etree._Element]] = {}
        self._by_class: dict[str, list[etree._Element]] = {}
        self._classes: dict[etree._Element, frozenset[str]] = {}
        self._compounds: dict[Compound, list[etree._Element]] = {}
        self._sets: dict[Compound, set[etree._Element]] = {}
        for el in page.iter():
            tag = el.tag
            if not isinstance(tag, str):
                continue  # comments and processing instructions: XPath's * skips them
            self._by_tag.setdefault(tag, []).append(el)
            value = el.get("class")
            if value:
                names = frozenset(name for name in _XPATH_SPACE.split(value) if name)
                self._classes[el] = names
                for name in names:
                    self._by_class.setdefault(name, []).append(el)

    def select(self, selector: str) -> list[etree._Element]:
        """What ``CSSSelector(selector)(page)`` gives: the matching elements in document order."""
        compounds = read(selector)
        if compounds is None:
            return list(_create_cssselector(selector)(self.page))
        *outer, last = compounds
        found = self._matching(last)
        if not outer:
            return list(found)
        # Each element needs ancestors matching the outer compounds, outermost first; for
        # descendant combinators alone the nearest matching ancestor is always a right choice.
        for compound in outer:
            self._matching(compound)
        sets = [self._sets[c] for c in outer]
        return [el for el in found if _has_ancestors(el, sets)]

    def _matching(self, compound: Compound) -> list[etree._Element]:
        known = self._compounds.get(compound)
        if known is None:
            tag, classes = compound
            if classes:
                known = [
                    el
                    for el in self._by_class.get(classes[0], [])
                    if (tag is None or el.tag == tag) and self._classes[el].issuperset(classes)
                ]
            else:
                assert tag is not None  # read() never gives an empty compound
                known = self._by_tag.get(tag, [])
            self._compounds[compound] = known
            self._sets[compound] = set(known)
        return known


def _has_ancestors(el: etree._Element, sets: list[set[etree._Element]]) -> bool:
    want = len(sets) - 1
    for up in el.iterancestors():
        if up in sets[want]:
            if want == 0:
                return True
            want -= 1
    return False
