"""Bytes → text, HTML → plain text, and headlines made from summaries.

Sources lie about their character sets. ``decode`` picks the encoding the
way a careful reader would: a byte-order mark wins; then bytes that are
valid UTF-8 and not plain ASCII are UTF-8, whatever a header claims (real
Latin-1 or Windows-1252 prose is practically never valid UTF-8, while UTF-8
mislabelled as Latin-1 is common); then the charsets the HTTP header, the
XML declaration and an HTML ``<meta>`` name, in that order, each tried
strictly; then Windows-1252, which decodes anything (it is what browsers use
for "ISO-8859-1").

``derive_title`` makes a headline for entries that have none.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

import lxml.html
from lxml import etree

_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']", re.I)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)
_CHARSET_PARAM = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_WIDE = ("utf-16", "utf-32")


@dataclass(frozen=True, slots=True)
class Decoded:
    """Text and the name of the encoding it was decoded from."""

    text: str
    encoding: str


def words(text: str) -> frozenset[str]:
    """The set of whitespace-separated words in ``text`` (for word lists in code)."""
    return frozenset(text.split())


def charset_of(content_type: str) -> str | None:
    """The ``charset`` parameter of a Content-Type header, if any."""
    m = _CHARSET_PARAM.search(content_type or "")
    return m.group(1) if m else None


def _known(label: str | None) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    # Browsers (and the WHATWG encoding standard) read Latin-1 as Windows-1252.
    return "cp1252" if name in ("latin-1", "iso8859-1", "ascii") else name


def decode(body: bytes, content_type: str = "") -> Decoded:
    """Decode ``body`` robustly; see the module docstring for the order of preference."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            try:
                return Decoded(body.decode(name), name)
            except UnicodeDecodeError:
                break
    head = body[:2048]
    xml = _XML_DECL.match(head)
    meta = _META_CHARSET.search(head)
    declared = [
        _known(charset_of(content_type)),
        _known(xml.group(1).decode("ascii") if xml else None),
        _known(meta.group(1).decode("ascii") if meta else None),
    ]
    wide = next((d for d in declared if d and d.startswith(_WIDE)), None)
    if wide is None and not body.isascii():
        try:
            return Decoded(body.decode("utf-8"), "utf-8")
        except UnicodeDecodeError:
            pass
    for label in declared:
        if label:
            try:
                return Decoded(body.decode(label), label)
            except UnicodeDecodeError:
                continue
    try:
        return Decoded(body.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        return Decoded(body.decode("cp1252", errors="replace"), "cp1252")


def collapse(text: str) -> str:
    """Runs of whitespace (including non-breaking spaces) become one space."""
    return " ".join(text.split())


def one_line(what: object, limit: int = 300) -> str:
    """``str(what)`` on one line, at most ``limit`` characters; an exception's type name when it says nothing."""
    text = collapse(str(what)) or type(what).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment, whitespace collapsed; plain text passes through."""
    if "<" not in fragment and "&" not in fragment:
        return collapse(fragment)
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (etree.ParserError, ValueError):
        return collapse(re.sub(r"<[^>]*>", " ", fragment))
    for bad in root.xpath(".//script|.//style"):
        bad.drop_tree()
    # Block elements end words; text_content() would glue "<p>a</p><p>b</p>" into "ab".
    for el in root.iter("br", "p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td"):
        el.tail = " " + (el.tail or "")
    return collapse(str(root.text_content()))


_STRAY_LEAD = re.compile(r"^[\s:;,|•·*>\-–—]+")


def clean_line(line: str) -> str:
    """A line of prose without stray leading punctuation (": Franz argues …")."""
    return _STRAY_LEAD.sub("", line).strip()


_ABBREVIATIONS = words(
    "mr mrs ms dr prof st jr sr vs etc e.g i.e inc ltd co corp no gen sen rep gov lt col sgt capt "
    "jan feb mar apr jun jul aug sep sept oct nov dec fig al approx dept est"
)
_SENTENCE_END = re.compile(r"([.!?…]+)[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
_TRAILING_FILLER = words(
    "a an the and or but nor of to in on at by for from with as into onto over than that which who "
    "its their his her our your this these those is are was were be"
)


def first_sentence(text: str) -> str:
    """The first sentence of ``text``; abbreviations ("U.S.", "Dr.") do not end one."""
    for m in _SENTENCE_END.finditer(text):
        if m.group(1) == ".":
            words = text[: m.start()].split()
            word = words[-1].lower().lstrip("(\"'“‘") if words else ""
            # "U.S." / "e.g." (a dot inside) and single initials ("J. Smith") are abbreviations.
            if word in _ABBREVIATIONS or "." in word or len(word) == 1:
                continue
        return text[: m.end(1)].strip()
    return text.strip()


def headline(title: str, summary: str, fallback: str) -> tuple[str, bool]:
    """The entry's title, or one derived from its summary (else ``fallback``); and whether it was derived."""
    if title:
        return title, False
    return (derive_title(summary) if summary else fallback), True


#: Where a clause of a long first sentence ends: a semicolon, colon or dash (strong), or a comma (weak).
_STRONG_END = re.compile(r"(?:[;:]|\s[-–—])(?=\s)")
_COMMA_END = re.compile(r",(?=\s)")


def _clause(sentence: str, mark: re.Pattern[str], limit: int, shortest: int) -> str | None:
    """The longest opening clause of ``sentence`` within ``limit`` that ends at ``mark`` (without it)."""
    for m in reversed(list(mark.finditer(sentence, 0, limit + 1))):
        clause = sentence[: m.start()].rstrip()
        if len(clause.split()) >= 3 and len(clause) >= shortest:
            return clause
    return None


def _whole(sentence: str) -> str:
    return sentence[:-1] if sentence.endswith(".") and not sentence.endswith("..") else sentence


def derive_title(summary: str, limit: int = 90) -> str:
    """A headline for an entry without one, made from its summary; never half a sentence.

    The first sentence, without its final full stop, when it has at most
    ``limit`` characters. A longer one gives its longest opening clause
    within the limit that ends at a semicolon, colon or dash ("… three key
    policies" of "… three key policies: attribution, …"); else the whole
    sentence, up to twice the limit; else an opening clause of at least two
    thirds of the limit ending at a comma (a shorter one is mostly the start
    of a list: "This week, giants Tencent"). Only a sentence with none of these is cut, at the last word
    boundary within the limit, with "…" marking the cut. Under a clause or a
    cut headline the summary is shown whole (``render.view``), so no
    sentence starts in the headline and ends in the summary.
    """
    sentence = first_sentence(collapse(summary))
    if len(sentence) <= limit:
        return _whole(sentence)
    strong = _clause(sentence, _STRONG_END, limit, 0)
    if strong is not None:
        return strong
    if len(sentence) <= 2 * limit:
        return _whole(sentence)
    weak = _clause(sentence, _COMMA_END, limit, 2 * limit // 3)
    if weak is not None:
        return weak
    cut = sentence.rfind(" ", 0, limit + 1)
    if cut <= 0:
        cut = sentence.find(" ")
        if cut == -1:
            return sentence
    words = sentence[:cut].split(" ")
    while len(words) > 1 and words[-1].lower().strip(",;:") in _TRAILING_FILLER:
        words.pop()
    head = " ".join(words).rstrip(" ,;:-–—(/&")
    return head + "…"
