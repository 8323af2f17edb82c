"""Reading the small form bodies the unsubscribe, sign-up and preferences endpoints receive.

RFC 8058 one-click requests carry a single field, ``List-Unsubscribe=One-Click``,
either form-encoded or as ``multipart/form-data``. Both are parsed here with
the standard library (``urllib.parse`` and the ``email`` package, which reads
MIME multipart natively), so the endpoint needs no multipart dependency. A
body that cannot be parsed yields no fields: the token in the URL is what
authorises the request, and the fields only say how it was made.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from urllib.parse import parse_qsl

#: Bodies larger than this are refused; the fields we read are a few bytes.
MAX_BODY = 16 * 1024

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a form body; the first value of a repeated name wins."""
    return {name: values[0] for name, values in form_values(content_type, body).items()}


def form_values(content_type: str, body: bytes) -> dict[str, list[str]]:
    """Every value of every field of a form body, in order (checkboxes repeat a name)."""
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        fields: dict[str, list[str]] = {}
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            fields.setdefault(name, []).append(value)
        return fields
    if media == "multipart/form-data":
        return _multipart_fields(content_type, body)
    return {}


def is_one_click(fields: dict[str, str]) -> bool:
    """Whether the fields are an RFC 8058 one-click request."""
    return fields.get(ONE_CLICK_FIELD, "").strip().casefold() == ONE_CLICK_VALUE.casefold()


def _multipart_fields(content_type: str, body: bytes) -> dict[str, list[str]]:
    # The email parser needs the boundary from a Content-Type header; HTTP
    # multipart bodies are MIME multipart otherwise. Header bytes arrive as
    # latin-1 text, so encoding back with latin-1 is lossless.
    head = f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = email.message_from_bytes(head + body, policy=email.policy.HTTP)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        return {}
    fields: dict[str, list[str]] = {}
    for part in message.iter_parts():
        if part.get_content_disposition() != "form-data":
            continue
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields.setdefault(name, []).append(payload.decode("utf-8", "replace"))
    return fields
