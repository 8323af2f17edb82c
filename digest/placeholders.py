"""Per-subscriber values as structure: random tokens per rendering, one ``personalise``.

Render writes each variant once, with a ``TokenSet`` (``models``) where the
per-subscriber values go, so the variant is rendered and CSS-inlined once;
``personalise`` then fills subject, HTML and text for one reader. Every
consumer calls it: the sender (``compose``, whose spliced fast path is
checked against it), the preview, the web version and ``digest build``.

The tokens are drawn at random for each rendering and frozen with the
variant, so a feed cannot know them: there is nothing to scrub from feed
text, and the renderer refuses a rendering in which feed text produced one
(see ``Renderer``). Filling is one pass over the cut positions: a value is
never searched again, so a value that holds a token cannot be filled twice.

Issues frozen before tokens were random keep the fixed tokens they were
rendered with (``LEGACY``); store migration 4 records them as their set.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from digest.models import Rendered, TokenSet

#: The template variables a rendering binds to its tokens, in ``TokenSet.pairs`` order.
KEYS = ("name", "email", "greeting", "unsubscribe_url", "footer_note", "preferences_url")
#: Keys a token set stored before the preferences link existed lacks (its bodies never hold one).
_ADDED_LATER = ("preferences_url",)

#: The fixed tokens of variants frozen before migration 4 (their HTML and text hold these).
LEGACY = TokenSet(
    name="DIGESTxNAMEx7f3a",
    email="DIGESTxEMAILx7f3a",
    greeting="DIGESTxGREETINGx7f3a",
    unsubscribe_url="DIGESTxUNSUBx7f3a",
    footer_note="DIGESTxFOOTERx7f3a",  # never in a legacy body: those templates had no footer_note
    preferences_url="DIGESTxPREFSx7f3a",  # nor this: the preferences link came later still
)

#: The page (under ``base_url``) the web version's unsubscribe link leads to: it explains how to unsubscribe.
UNSUBSCRIBE_HELP = "/unsubscribe-help"
#: Where a test message's unsubscribe (and preferences) link leads: a page saying it was a test.
#: Never a token (tokens are 24 characters or more), so it cannot unsubscribe anybody.
TEST_LINK = "/u/test"

_TOKEN = re.compile(r"[A-Za-z0-9]{8,64}")


@dataclass(frozen=True, slots=True)
class Values:
    """What one reader's copy says in place of the tokens (plain text; HTML-escaped when filled).

    Build it with ``values_for`` (a subscriber) or ``web_values`` (the public web version).
    """

    name: str
    email: str
    greeting: str
    unsubscribe_url: str
    footer_note: str
    preferences_url: str = ""

    def by_key(self) -> dict[str, str]:
        return {
            "name": self.name,
            "email": self.email,
            "greeting": self.greeting,
            "unsubscribe_url": self.unsubscribe_url,
            "footer_note": self.footer_note,
            "preferences_url": self.preferences_url,
        }


@dataclass(frozen=True, slots=True)
class Personal:
    """One reader's copy of a variant: subject and text verbatim, HTML with escaped values."""

    subject: str
    html: str
    text: str


def greeting(name: str) -> str:
    """The salutation line for a subscriber: ``Hello Ann,`` or ``Hello,``."""
    return f"Hello {name}," if name else "Hello,"


def values_for(name: str, email: str, unsubscribe_url: str, *, title: str, preferences_url: str = "") -> Values:
    """A subscriber's values; ``title`` is the digest's, for the footer note; ``preferences_url`` their ``/p/`` link."""
    return Values(
        name=name,
        email=email,
        greeting=greeting(name),
        unsubscribe_url=unsubscribe_url,
        footer_note=f"You get this because you subscribed to {title} as {email}.",
        preferences_url=preferences_url,
    )


def web_values(title: str, base_url: str) -> Values:
    """The values of the public web version: no one's name or address, a neutral greeting and footer.

    Its unsubscribe link leads to ``UNSUBSCRIBE_HELP``, which explains how to
    unsubscribe from one's own copy: the web version belongs to no one.
    """
    return Values(
        name="",
        email="",
        greeting="Hello,",
        unsubscribe_url=base_url.rstrip("/") + UNSUBSCRIBE_HELP,
        footer_note=f"You are reading the web version of {title}.",
        # Themes are changed from one's own copy too: the help page says how.
        preferences_url=base_url.rstrip("/") + UNSUBSCRIBE_HELP,
    )


@functools.lru_cache(maxsize=512)
@functools.lru_cache(maxsize=64)
def _pattern(tokens: TokenSet) -> tuple[re.Pattern[str], dict[str, str]]:
    # Cached: a rendering cuts every part of every variant with its one token set.
    key_of = {token: key for key, token in tokens.pairs()}
    return re.compile("(" + "|".join(re.escape(t) for t in key_of) + ")"), key_of


def cut(text: str, tokens: TokenSet) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``text`` cut at its tokens: ``pieces`` (one more than ``keys``) and the key of each token.

    ``text == pieces[0] + token(keys[0]) + pieces[1] + ...``; the one place tokens are found.
    """
    pattern, key_of = _pattern(tokens)
    parts = pattern.split(text)  # pieces and, between them, the tokens (the pattern's one group)
    return tuple(parts[0::2]), tuple(key_of[t] for t in parts[1::2])


def join(pieces: tuple[str, ...], keys: tuple[str, ...], values: Mapping[str, str]) -> str:
    """The inverse of ``cut`` with ``values[key]`` in place of each token."""
    out = [pieces[0]]
    for key, piece in zip(keys, pieces[1:], strict=True):
        out.append(values[key])
        out.append(piece)
    return "".join(out)


def personalise(rendered: Rendered, values: Values) -> Personal:
    """``rendered`` filled for one reader: each token replaced once, HTML values escaped.

    The reference for every consumer; compose's spliced message decodes to exactly this.
    """
    plain = values.by_key()
    escaped = {k: html.escape(v, quote=True) for k, v in plain.items()}
    tokens = rendered.tokens
    return Personal(
        subject=join(*cut(rendered.subject, tokens), plain),
        html=join(*cut(rendered.html, tokens), escaped),
        text=join(*cut(rendered.text, tokens), plain),
    )


def swap(text: str, old: TokenSet, new: TokenSet) -> str:
    """``text`` with each token of ``old`` replaced by the same key's token of ``new``."""
    return join(*cut(text, old), dict(new.pairs()))


def tokens_to_json(tokens: TokenSet) -> str:
    """The stored form of a token set: a JSON object keyed like ``KEYS``."""
    return json.dumps(dict(tokens.pairs()), sort_keys=True)


def tokens_from_json(raw: str) -> TokenSet:
    """The token set stored by ``tokens_to_json``; ``ValueError`` for anything else."""
    data = json.loads(raw)
    if isinstance(data, dict) and set(data) == set(KEYS) - set(_ADDED_LATER):
        # Stored before those keys existed: their bodies hold no such token. One derived from the
        # stored set (random, except for LEGACY) is as unknowable as the set, and the same at every read.
        data = {**data, **{k: "X" + hashlib.sha256(f"{raw}\0{k}".encode()).hexdigest()[:32] for k in _ADDED_LATER}}
    if not isinstance(data, dict) or set(data) != set(KEYS):
        raise ValueError(f"a placeholder token set needs exactly the keys {', '.join(KEYS)}")
    values = [data[k] for k in KEYS]
    if not all(isinstance(v, str) and _TOKEN.fullmatch(v) for v in values) or len(set(values)) != len(values):
        raise ValueError("placeholder tokens must be distinct runs of 8 to 64 ASCII letters and digits")
    return TokenSet(*values)
