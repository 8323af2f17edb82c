"""Quoted-printable bodies spliced per recipient: pieces encoded once, values joined in.

Each piece of a body between two placeholder tokens is QP-encoded once per
variant (lines of at most 75 characters); each recipient's value is encoded
on its own, and the parts are joined with soft line breaks (``=`` CRLF),
which decoders drop. The decoded body equals what ``email.contentmanager``
makes of ``placeholders.personalise``'s text (the tests prove it for any
values), with every line within 76 octets.

No encoded line starts with a dot: a leading ``.`` is written ``=2E``
(the same text once decoded). Every line of a spliced body starts either a
piece or a line inside one, so a message made of these bodies needs no
SMTP dot-stuffing (RFC 5321 4.5.2), the one full pass over its bytes the
sender would otherwise make per message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.quoprimime import body_encode

from digest import placeholders
from digest.models import TokenSet

# Printable ASCII except "=", not ending in a space: quoted-printable leaves it as is.
_QP_LITERAL = re.compile(r"(?:[ !-<>-~]*[!-<>-~])?")
_LEADING_DOT = re.compile(r"^\.", re.MULTILINE)

#: One piece of a body: its QP form, its QP form after a CR (a leading LF dropped), whether it ends with a CR.
_Chunk = tuple[bytes, bytes, bool]


class SplicedBody:
    """A body as QP-encoded pieces between the variant's tokens, for splicing values in.

    Decoded, ``fill`` gives what ``email.contentmanager`` makes of the
    personalised text: every ``\\r\\n``, ``\\r`` and ``\\n`` one line end, and a
    final line end added if there is none. Line ends are normalised per piece
    at build time; what only the joined text decides is settled in ``fill``:
    a ``\\r`` at the end of one chunk and a ``\\n`` at the start of the next
    are one line end (so, around an empty value, two pieces meet), and the
    final line end depends on the last chunk that is not empty.
    """

    __slots__ = ("first", "keys", "steps")

    def __init__(self, first: _Chunk, steps: tuple[tuple[str, _Chunk], ...]) -> None:
        self.first = first
        self.steps = steps
        self.keys = tuple(dict.fromkeys(key for key, _ in steps))

    @classmethod
    def of(cls, text: str, tokens: TokenSet) -> SplicedBody:
        pieces, keys = placeholders.cut(text, tokens)
        chunks = [_chunk(piece) for piece in pieces]
        return cls(chunks[0], tuple(zip(keys, chunks[1:], strict=True)))

    def fill(self, values: Mapping[str, str]) -> bytes:
        """The QP body with ``values`` (already escaped for HTML when it is HTML) in place of the tokens."""
        mine = {k: _chunk(values[k]) for k in self.keys}  # each value encoded once per message
        chunks = [self.first]
        for key, piece in self.steps:
            chunks.append(mine[key])
            chunks.append(piece)
        out: list[bytes] = []
        cr = False  # the text so far ends with a CR: a leading LF next is part of its line end
        mid_line = False  # the encoded text so far ends inside a line
        for encoded, after_cr, ends_cr in chunks:
            if not encoded:  # an empty text: changes nothing, so the chunks around it meet
                continue
            data = after_cr if cr else encoded
            cr = ends_cr
            if not data:
                continue
            if mid_line and not data.startswith(b"\r\n"):
                out.append(b"=\r\n")  # a soft break: the line goes on
            out.append(data)
            # A trailing soft break ("=" CRLF, what body_encode writes after a final space) ends no line.
            mid_line = data.endswith(b"=\r\n") or not data.endswith(b"\n")
        if not out:
            return b"\r\n"  # an empty text is one empty line
        if mid_line:
            out.append(b"\r\n")
        return b"".join(out)


def _chunk(text: str) -> _Chunk:
    if "\r" not in text and "\n" not in text:  # the common case, for every value of every message
        encoded = _qp(text)
        return encoded, encoded, False
    encoded = _qp(_one_break(text))
    after_cr = _qp(_one_break(text[1:])) if text.startswith("\n") else encoded
    return encoded, after_cr, text.endswith("\r")


def _one_break(text: str) -> str:
    """``text`` with each CRLF, CR or LF as one LF (the line ends ``bytes.splitlines`` knows)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _qp(text: str) -> bytes:
    """Quoted-printable of ``text`` as UTF-8, lines ≤ 75 so a soft break fits, none starting with a dot."""
    if _QP_LITERAL.fullmatch(text):
        if len(text) <= 75 and not text.startswith("."):
            return text.encode("ascii")
        # A long literal (an unsubscribe URL, every message): body_encode's own split, without
        # its per-character translate; 74 characters and a soft break per line, the rest last.
        cut = range(0, len(text) - 75, 74)
        lines = [text[i : i + 74] + "=" for i in cut] + [text[len(cut) * 74 :]]
        if not any(line.startswith(".") for line in lines):
            return "\r\n".join(lines).encode("ascii")
    latin = text.encode("utf-8").decode("latin-1")  # body_encode maps each octet
    encoded = body_encode(latin, 75, "\r\n")
    if encoded.startswith(".") or "\n." in encoded:
        # "=2E" is two octets longer than the dot: encode two shorter, then escape.
        encoded = _LEADING_DOT.sub("=2E", body_encode(latin, 73, "\r\n"))
    return encoded.encode("ascii")
