"""Rendered variant + recipient → the finished message bytes (MIME, headers, DKIM).

Compose owns the wire form of a digest email and nothing else: no rendering,
no SMTP. Two paths produce the same message:

* ``compose_message`` (the reference) builds an ``EmailMessage`` for one
  recipient; ``compose`` serialises it to an ``Outgoing``.
* ``MessageTemplate.build`` does the MIME work once per variant and
  ``personalise`` splices one recipient into precomputed bytes (bodies: ``splice``); it is the
  path used when sending to many subscribers.

Bodies are ``multipart/alternative`` (text/plain, then text/html), UTF-8,
quoted-printable. QP was chosen over base64 because it splices: each piece of
a body between two placeholders is QP-encoded once at build time (lines of at
most 75 characters), each per-recipient value is QP-encoded on its own at
splice time, and the pieces are joined with soft line breaks (``=`` CRLF),
which decoders drop. Every line therefore stays within 76 octets and the
decoded body equals the reference. base64 would need the whole part
re-encoded per recipient.

Headers that carry user text (Subject, To, From, List-Id) are folded by this
module rather than by ``email.policy``: the stdlib folder loses or adds
spaces in long non-ASCII or long display names, and turns long URLs into
encoded words, which breaks List-Unsubscribe. Printable ASCII is folded at
spaces; anything else becomes RFC 2047 ``=?utf-8?b?`` words of at most 68
characters, which decode back exactly. Both paths use the same functions.
"""

from __future__ import annotations

from digest.compose.headers import clean_text, default_list_id, message_id
from digest.compose.message import (
    DKIM_HEADERS,
    POLICY,
    ComposeSettings,
    MessageTemplate,
    Recipient,
    compose,
    compose_message,
    dkim_sign,
    personalise_many,
)

__all__ = [
    "DKIM_HEADERS",
    "POLICY",
    "ComposeSettings",
    "MessageTemplate",
    "Recipient",
    "clean_text",
    "compose",
    "compose_message",
    "default_list_id",
    "dkim_sign",
    "message_id",
    "personalise_many",
]
