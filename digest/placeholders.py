"""Per-subscriber placeholders: rendered once per variant, filled per subscriber.

Render puts these tokens where per-subscriber values go, so each variant is
rendered and CSS-inlined once; compose fills them for each subscriber. The
tokens are plain ASCII that neither Jinja2 autoescaping, premailer, quoted-
printable nor base64 line folding alters (no ``<>&"'=``, no spaces).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

NAME = "DIGESTxNAMEx7f3a"
EMAIL = "DIGESTxEMAILx7f3a"
GREETING = "DIGESTxGREETINGx7f3a"
UNSUBSCRIBE_URL = "DIGESTxUNSUBx7f3a"
PREFERENCES_URL = "DIGESTxPREFSx7f3a"

#: The template variables render binds to the tokens.
PLACEHOLDERS: Mapping[str, str] = {
    "name": NAME,
    "email": EMAIL,
    "greeting": GREETING,
    "unsubscribe_url": UNSUBSCRIBE_URL,
    "preferences_url": PREFERENCES_URL,
}


#: Anything shaped like a token, so feed text cannot smuggle one in (not just today's four).
_ANY_TOKEN = re.compile(r"DIGESTx[A-Za-z]*x7f3a", re.IGNORECASE)


def scrub(text: str) -> str:
    """``text`` without anything that looks like a placeholder token.

    Entries come from the open web: a feed that put ``DIGESTxEMAILx7f3a`` in a
    link would otherwise have every subscriber's address and unsubscribe URL
    filled into it. Render scrubs every entry before it reaches a template.
    """
    return _ANY_TOKEN.sub("", text) if "x7f3a" in text.lower() else text


def greeting(name: str) -> str:
    """The salutation line for a subscriber: ``Hello Ann,`` or ``Hello,``."""
    return f"Hello {name}," if name else "Hello,"


def values_for(name: str, email: str, unsubscribe_url: str, preferences_url: str = "") -> dict[str, str]:
    """The values for one subscriber, keyed like ``PLACEHOLDERS`` (``preferences_url``: their ``/p/`` link)."""
    return {
        "name": name,
        "email": email,
        "greeting": greeting(name),
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }


def fill(text: str, values: Mapping[str, str], *, escape_html: bool) -> str:
    """Replace every token in ``text``; values are HTML-escaped when asked."""
    for key, token in PLACEHOLDERS.items():
        if token in text:
            value = values[key]
            text = text.replace(token, html.escape(value, quote=True) if escape_html else value)
    return text
