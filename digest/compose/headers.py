"""Header values for digest emails: cleaning, Message-IDs, RFC 2047 words, folding.

Headers that carry user text (Subject, To, From, List-Id) are folded here
rather than by ``email.policy``: the stdlib folder loses or adds spaces in
long non-ASCII or long display names, and turns long URLs into encoded
words, which breaks List-Unsubscribe. Printable ASCII is folded at spaces;
anything else becomes RFC 2047 ``=?utf-8?b?`` words of at most 68
characters, which decode back exactly (display names: see ``fold_phrase``). Every function returns the value
after ``Name: `` with continuation lines joined by ``\\r\\n `` and no line
over 78 characters unless a single word (a URL, an address) is longer.
Folding never goes inside ``<…>``: RFC 2369 forbids whitespace in a
bracketed URL. An address header (To, From) whose first word fits only on a
line of its own breaks right after the colon: its value then starts with
``\\r\\n ``, and ``header_line`` and ``message.POLICY`` write ``Name:``
without the space, as the stdlib does. Unstructured fields (Subject,
List-Id, List-Unsubscribe) never break there: parsers such as Python's
``email`` keep that fold's space as part of the value.
"""

from __future__ import annotations

import hashlib
import re
from base64 import b64encode
from email.utils import parseaddr
from itertools import groupby

from digest.errors import ConfigError

MAX_HEADER_LINE = 78
MAX_SUBJECT = 300
MAX_NAME = 300

# Control characters (C0, DEL, C1, line/paragraph separators) and any run of
# whitespace become one space: feed text must never start a new header line.
_UNSAFE_RUN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\s]+")
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_PRINTABLE = re.compile(r"[ -~]*")
_EW_BYTES = 42  # 56 base64 characters: "=?utf-8?b?" + 56 + "?=" is 68
# RFC 5322 atext, and dot-atom-text: atoms joined by single dots.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LIST_ID = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)+")
#: RFC 2919: the id between the brackets of List-Id is at most 255 octets.
MAX_LIST_ID = 255
#: The slug part of a generated id, at most one DNS label long.
MAX_LIST_SLUG = 63


def default_list_id(title: str, from_: str) -> str:
    """``"Cyber Weekly <cyber-weekly.example.org>"`` from the title and the sender (RFC 2919).

    The slug is the title's ASCII letters and digits joined by ``-``, cut at
    a ``-`` to at most 63 characters and so that the id stays within 255 octets.
    """
    domain = domain_of(from_)
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "digest"
    room = min(MAX_LIST_SLUG, MAX_LIST_ID - len(domain) - 1)
    if room < 1:
        raise ConfigError(f"sender.from: the domain {domain!r} is too long to name a List-Id")
    if len(slug) > room:
        cut = slug[:room]
        slug = (cut.rsplit("-", 1)[0] if "-" in cut[1:] else cut).strip("-") or cut
    return f"{clean_text(title, MAX_SUBJECT)} <{slug}.{domain}>"


def split_list_id(list_id: str) -> tuple[str, str]:
    """``"Name <label.example.org>"`` → its cleaned name and its id (``label.example.org``).

    Raises ``ConfigError`` unless the id is an RFC 2919 dot-atom of at most 255 octets.
    """
    name, bracket, rest = list_id.rpartition("<")
    label = rest.strip().removesuffix(">").strip() if bracket else ""
    if not bracket or not rest.strip().endswith(">") or not _LIST_ID.fullmatch(label):
        raise ConfigError(f"digest.list_id: must look like 'Name <label.example.org>', got {list_id!r}")
    if len(label) > MAX_LIST_ID:
        raise ConfigError(f"digest.list_id: the id in <…> is {len(label)} octets, at most {MAX_LIST_ID} allowed")
    return clean_text(name, MAX_NAME), label


def clean_text(text: str, limit: int) -> str:
    """Header-safe text: control characters and whitespace runs become one space."""
    text = _UNSAFE_RUN.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def message_id(issue_key: str, email: str, domain: str) -> str:
    """``<2018-W02.{20 hex}@domain>``, the same for the same issue and address."""
    left = re.sub(r"[^A-Za-z0-9_-]+", "-", issue_key).strip("-") or "issue"
    digest = hashlib.sha256((issue_key + email.lower()).encode("utf-8")).hexdigest()[:20]
    return f"<{left}.{digest}@{domain}>"


def domain_of(from_: str) -> str:
    addr = parseaddr(from_)[1]
    if "@" not in addr:
        raise ConfigError(f"sender.from: not an address: {from_!r}")
    return addr.rsplit("@", 1)[1].lower()


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 base64 words for ``text``, split between characters."""
    data = text.encode("utf-8")
    chunks = [data]
    if len(data) > _EW_BYTES:
        chunks = []
        current: list[str] = []
        size = 0
        for ch in text:
            n = len(ch.encode("utf-8"))
            if size + n > _EW_BYTES:
                chunks.append("".join(current).encode("utf-8"))
                current, size = [], 0
            current.append(ch)
            size += n
        chunks.append("".join(current).encode("utf-8"))
    return [f"=?utf-8?b?{b64encode(c).decode('ascii')}?=" for c in chunks]


def _fold(name: str, words: list[str], *, after_colon: bool = False) -> str:
    """Join ``words`` with spaces, breaking lines before a word that would pass 78.

    ``after_colon``: a first word too long for ``Name: `` but short enough
    for a line of its own starts on the next line (the value then starts
    with ``\\r\\n ``).
    """
    lines: list[str] = []
    line = ""
    used = len(name) + 1  # "Name:"
    first = words[0] if words else ""
    if after_colon and used + 1 + len(first) > MAX_HEADER_LINE and 1 + len(first) <= MAX_HEADER_LINE:
        lines.append("")
        used = 0
    for word in words:
        if line and used + 1 + len(line) + 1 + len(word) > MAX_HEADER_LINE:
            lines.append(line)
            line, used = word, 0
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def header_line(name: str, value: str) -> bytes:
    """``Name: value`` CRLF as bytes; ``Name:`` CRLF SP … when ``value`` opens with a fold."""
    sep = "" if value.startswith("\r\n") else " "
    return f"{name}:{sep}{value}\r\n".encode("ascii")


def fold_text(name: str, text: str) -> str:
    """An unstructured header value: plain words when ASCII allows, else encoded words."""
    words = text.split(" ")
    if _PRINTABLE.fullmatch(text) and "=?" not in text and max(map(len, words)) <= 70:
        return _fold(name, words)
    return _fold(name, _encoded_words(text))


def fold_phrase(name: str, phrase: str, angle: str, *, after_colon: bool = False) -> str:
    """``phrase <angle>``: ASCII words as atoms or a quoted string, other words encoded.

    Encoded words only ever stand for runs of words that need them, and runs
    are split from plain words at spaces, so the space between a plain and
    an encoded word survives every decoder. A run longer than one encoded
    word is split between characters; RFC 2047 decoders drop the folding
    space between adjacent encoded words (``email.policy.default``'s parser
    wrongly keeps it, so it shows a space there).
    """
    if not phrase:
        return _fold(name, [angle], after_colon=after_colon)
    tokens: list[str] = []
    for is_plain, run in groupby(phrase.split(" "), key=_is_plain):
        text = " ".join(run)
        tokens.extend(_plain_words(text) if is_plain else _encoded_words(text))
    return _fold(name, [*tokens, angle], after_colon=after_colon)


def _is_plain(text: str) -> bool:
    # "=?" would read as an encoded word even inside quotes, so it is encoded. A plain word too
    # long for a line stays one word: as encoded words it would gain spaces in common parsers.
    return _PRINTABLE.fullmatch(text) is not None and "=?" not in text


def _plain_words(text: str) -> list[str]:
    """Printable ASCII as atoms, or as a quoted string cut at its spaces.

    Folding at a space inside a quoted string keeps the space (RFC 5322
    §3.2.4: FWS in a quoted string is part of its value once unfolded).
    """
    if _ATEXT_PHRASE.fullmatch(text):
        return text.split(" ")
    return _quote(text).split(" ")


def _quote(phrase: str) -> str:
    return '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fold_address(name: str, display: str, addr: str) -> str:
    """An address header value; the bare address when there is no display name."""
    if not display:
        return _fold(name, [addr], after_colon=True)
    return fold_phrase(name, display, f"<{addr}>", after_colon=True)


def fold_list_unsubscribe(url: str, mailto: str) -> str:
    """``<https://…/u/TOKEN>`` and, when given, ``<mailto:…>``, folded between the two.

    RFC 2369 allows folding white space before each bracketed URL, so a URL
    too long for the ``List-Unsubscribe:`` line starts on the next one (a
    URL of over 76 characters is one word, longer than any line).
    """
    if mailto:
        return _fold("List-Unsubscribe", [f"<{url}>,", f"<mailto:{mailto}>"], after_colon=True)
    return _fold("List-Unsubscribe", [f"<{url}>"], after_colon=True)
