"""Rendered variant + recipient → message: the reference path and the spliced template.

``compose_message`` builds one ``EmailMessage`` through the stdlib from
``placeholders.personalise`` (the reference); ``MessageTemplate`` serialises
the same structure once per variant with sentinels in place of the
per-recipient values and splices each recipient into the bytes, at the
positions ``placeholders.cut`` found once per variant. See the package
docstring for the encoding choice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import dkim

from digest import placeholders
from digest.compose.headers import (
    MAX_NAME,
    MAX_SUBJECT,
    clean_text,
    domain_of,
    fold_address,
    fold_list_unsubscribe,
    fold_phrase,
    fold_text,
    header_line,
    message_id,
    split_list_id,
)
from digest.compose.splice import SplicedBody
from digest.errors import ConfigError, SubscriberError
from digest.models import Outgoing, Rendered


class _Policy(email_policy.EmailPolicy):
    """``email.policy.SMTP`` that writes a value folded right after the colon as ``Name:`` CRLF SP ….

    The stdlib writes ``Name: `` before every raw value, which would leave a
    space at the end of the line (see ``headers.header_line``, which the
    spliced path uses).
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        folded = super().fold_binary(name, value)
        opening = name.encode("ascii") + b": \r\n"
        return name.encode("ascii") + b":" + folded[len(opening) - 2 :] if folded.startswith(opening) else folded


#: QP bodies want lines of at most 76 octets; headers are folded to 78 by hand.
POLICY = _Policy(linesep="\r\n", max_line_length=76, refold_source="none")
MAX_URL = 900
#: Signed one time more than they occur (RFC 6376 §8.15, "oversigning"): the extra
#: entry signs an absent instance, so one added after signing fails verification.
DKIM_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"reply-to",
)
_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)

_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
_URL_UNSAFE = re.compile(r"[^!#-;=?-~]")  # no space, quotes, angle brackets, non-ASCII

# Stand-ins for the per-recipient header values and the two bodies in the
# skeleton message that MessageTemplate cuts apart.
_SENTINEL_TO = "DIGESTxTOx7f3a"
_SENTINEL_SUBJECT = "DIGESTxSUBJECTx7f3a"
_SENTINEL_MID = "DIGESTxMIDx7f3a"
_SENTINEL_UNSUB = "DIGESTxLUx7f3a"
_MARK_TEXT = "DIGESTxTEXTx7f3a"
_MARK_HTML = "DIGESTxHTMLx7f3a"


@dataclass(frozen=True, slots=True)
class ComposeSettings:
    """What compose needs from the config, for one issue.

    ``from_`` is ``"Cyber Weekly <digest@example.org>"``; its domain names the
    Message-IDs and signs DKIM. ``list_id`` is ``"Cyber Weekly
    <cyber-weekly.example.org>"`` (see ``default_list_id``). ``date`` is the
    issue's send date, timezone-aware. ``unsubscribe_mailto`` is an address
    (``mailto:`` optional) added to List-Unsubscribe. ``dkim_key`` is a PEM
    private key; with ``dkim_selector`` it turns signing on. ``title`` is the
    digest's title for the footer note (default: the name part of ``list_id``).
    """

    from_: str
    list_id: str
    date: dt.datetime
    unsubscribe_mailto: str = ""
    dkim_selector: str = ""
    dkim_key: bytes | None = None
    title: str = ""


@dataclass(frozen=True, slots=True)
class Recipient:
    """One addressee: a validated address, a display name, their unsubscribe and preferences links."""

    email: str
    name: str
    unsubscribe_url: str
    preferences_url: str = ""


def compose_message(rendered: Rendered, recipient: Recipient, settings: ComposeSettings) -> EmailMessage:
    """The reference message for one recipient (slow: parses and encodes everything)."""
    name, email, url = _clean_recipient(recipient)
    mine = placeholders.personalise(rendered, _values(settings, name, email, url, recipient.preferences_url))
    head = _Head.of(rendered, settings)
    personal = {
        "To": fold_address("To", name, email),
        "Subject": _subject(mine.subject),
        "Message-ID": message_id(rendered.issue_key, email, head.domain),
        "List-Unsubscribe": fold_list_unsubscribe(url, head.mailto),
    }
    return _assemble(head, personal, mine.text, mine.html)


def compose(rendered: Rendered, recipient: Recipient, settings: ComposeSettings) -> Outgoing:
    """``compose_message`` serialised (CRLF) and DKIM-signed when configured."""
    msg = compose_message(rendered, recipient, settings)
    data = msg.as_bytes(policy=POLICY)
    if settings.dkim_key:
        data = dkim_sign(data, settings) + data
    return Outgoing(rendered.issue_key, recipient.email, str(msg["Message-ID"]), data)


class MessageTemplate:
    """One variant's message as bytes with holes for the per-recipient values.

    Build once per variant, then ``personalise`` per recipient: it encodes
    only the recipient's values and joins precomputed bytes.
    """

    __slots__ = (
        "_dot_safe",
        "_fixed_subject",
        "_html",
        "_issue_key",
        "_mailto",
        "_pieces",
        "_settings",
        "_subject",
        "_text",
        "domain",
    )

    def __init__(
        self,
        issue_key: str,
        domain: str,
        mailto: str,
        pieces: tuple[bytes, ...],
        subject: tuple[tuple[str, ...], tuple[str, ...]],
        text: SplicedBody,
        html_body: SplicedBody,
        settings: ComposeSettings,
    ) -> None:
        self._issue_key = issue_key
        self.domain = domain
        self._mailto = mailto
        self._pieces = pieces
        self._subject = subject
        self._fixed_subject = _subject(subject[0][0])  # used when the subject has no token
        self._text = text
        self._html = html_body
        self._settings = settings
        # The bodies never start a line with a dot (splice.py) and header lines start with a
        # name or a fold's space: when the fixed pieces have none either, no message will.
        self._dot_safe = not any(starts_a_line_with_dot(piece) for piece in pieces)

    @classmethod
    def build(cls, rendered: Rendered, settings: ComposeSettings) -> MessageTemplate:
        """Encode the variant once: headers, MIME framing and body pieces."""
        head = _Head.of(rendered, settings)
        sentinels = {
            "To": _SENTINEL_TO,
            "Subject": _SENTINEL_SUBJECT,
            "Message-ID": _SENTINEL_MID,
            "List-Unsubscribe": _SENTINEL_UNSUB,
        }
        skeleton = _assemble(head, sentinels, _MARK_TEXT, _MARK_HTML).as_bytes(policy=POLICY)
        marks = [
            f"To: {_SENTINEL_TO}\r\n",
            f"Subject: {_SENTINEL_SUBJECT}\r\n",
            f"Message-ID: {_SENTINEL_MID}\r\n",
            f"List-Unsubscribe: {_SENTINEL_UNSUB}\r\n",
            f"{_MARK_TEXT}\r\n",
            f"{_MARK_HTML}\r\n",
        ]
        # Anchored at line starts: a folded Subject line cannot fake a mark.
        pattern = b"|".join(b"(?<=\n)" + re.escape(m.encode("ascii")) for m in marks)
        pieces = re.split(pattern, skeleton)
        if len(pieces) != len(marks) + 1:
            raise RuntimeError("message skeleton lost a placeholder")  # a bug, not bad input
        if settings.dkim_key:
            dkim_sign(skeleton, settings)  # a bad key fails here, once, not per message
        tokens = rendered.tokens
        return cls(
            rendered.issue_key,
            head.domain,
            head.mailto,
            tuple(pieces),
            placeholders.cut(rendered.subject, tokens),
            SplicedBody.of(rendered.text, tokens),
            SplicedBody.of(rendered.html, tokens),
            settings,
        )

    def personalise(self, recipient: Recipient) -> Outgoing:
        """The finished message for one recipient, equal to ``compose``'s.

        Its subject and decoded bodies are ``placeholders.personalise`` of the
        variant for the recipient's values (the tests prove it for any values).
        """
        name, email, url = _clean_recipient(recipient)
        plain = _values(self._settings, name, email, url, recipient.preferences_url).by_key()
        mid = message_id(self._issue_key, email, self.domain)
        pieces, keys = self._subject
        subject = _subject(placeholders.join(pieces, keys, plain)) if keys else self._fixed_subject
        p = self._pieces
        data = b"".join(
            (
                p[0],
                header_line("To", fold_address("To", name, email)),
                p[1],
                header_line("Subject", subject) if subject else b"Subject:\r\n",  # as the reference writes it
                p[2],
                header_line("Message-ID", mid),
                p[3],
                header_line("List-Unsubscribe", fold_list_unsubscribe(url, self._mailto)),
                p[4],
                self._text.fill(plain),
                p[5],
                self._html.fill({k: html.escape(plain[k], quote=True) for k in self._html.keys}),
                p[6],
            )
        )
        dot_safe = self._dot_safe
        if self._settings.dkim_key:
            signature = dkim_sign(data, self._settings)
            dot_safe = dot_safe and not starts_a_line_with_dot(signature)
            data = signature + data
        return Outgoing(self._issue_key, email, mid, data, dot_safe=dot_safe)


def starts_a_line_with_dot(data: bytes) -> bool:
    """A line of ``data`` starts with ``.`` (SMTP would have to double it)."""
    return data.startswith(b".") or b"\n." in data


def personalise_many(template: MessageTemplate, recipients: Iterable[Recipient]) -> list[Outgoing]:
    """``personalise`` over many recipients; a helper for benchmarks and batch sends."""
    return [template.personalise(r) for r in recipients]


def oversigned_headers(data: bytes) -> list[bytes]:
    """``h=`` for ``data``: each of ``DKIM_HEADERS`` once more than the message has it."""
    head = data.split(b"\r\n\r\n", 1)[0]
    present = [m.lower() for m in _HEADER_NAME.findall(head)]
    return [name for name in DKIM_HEADERS for _ in range(present.count(name) + 1)]


def dkim_sign(data: bytes, settings: ComposeSettings) -> bytes:
    """The ``DKIM-Signature`` header line(s) for ``data``, to prepend to it (see ``oversigned_headers``)."""
    if not settings.dkim_key or not settings.dkim_selector:
        raise ConfigError("sender.dkim_key: DKIM signing needs both dkim_key and dkim_selector")
    try:
        signature: bytes = dkim.sign(
            data,
            settings.dkim_selector.encode("ascii"),
            domain_of(settings.from_).encode("ascii"),
            settings.dkim_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=oversigned_headers(data),
        )
    except dkim.DKIMException as exc:
        raise ConfigError(f"sender.dkim_key: cannot sign with this key: {exc}") from exc
    return signature


# -- internals ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Head:
    """The per-variant header values, already folded (``\\r\\n `` continuations)."""

    issue_key: str
    domain: str
    mailto: str
    from_: str
    date: str
    list_id: str
    boundary: str

    @classmethod
    def of(cls, rendered: Rendered, settings: ComposeSettings) -> _Head:
        from_name, from_addr = parseaddr(settings.from_)
        if not _ADDRESS.fullmatch(from_addr):
            raise ConfigError(f"sender.from: not a usable address: {settings.from_!r}")
        if settings.date.tzinfo is None:
            raise ValueError("ComposeSettings.date must be timezone-aware")
        # The id is split off before the name is cleaned: cutting a long name must not cut the id.
        list_name, list_label = split_list_id(settings.list_id)
        mailto = settings.unsubscribe_mailto.strip().removeprefix("mailto:")
        if mailto and "?" not in mailto:
            mailto += "?subject=unsubscribe"
        if _URL_UNSAFE.search(mailto):
            raise ConfigError(f"sender.unsubscribe_mailto: not a usable address: {mailto!r}")
        r = rendered
        # Seeded by the variant's structure, not its random tokens: the same issue gets the same boundary.
        shapes = [repr(placeholders.cut(part, r.tokens)) for part in (r.subject, r.text, r.html)]
        seed = "\0".join((r.issue_key, r.variant, *shapes))
        return cls(
            issue_key=rendered.issue_key,
            domain=from_addr.rsplit("@", 1)[1].lower(),
            mailto=mailto,
            from_=fold_address("From", clean_text(from_name, MAX_NAME), from_addr),
            date=format_datetime(settings.date),
            list_id=fold_phrase("List-Id", list_name.strip(), f"<{list_label}>"),
            # "=_" never occurs in quoted-printable text, so the boundary cannot clash.
            boundary="=_digest_" + hashlib.sha256(seed.encode("utf-8")).hexdigest()[:24],
        )


def _assemble(head: _Head, personal: Mapping[str, str], text: str, html_body: str) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    # set_raw keeps our folding; POLICY's refold_source="none" stops the generator redoing it.
    msg.set_raw("From", head.from_)
    msg.set_raw("To", personal["To"])
    msg.set_raw("Subject", personal["Subject"])
    msg.set_raw("Date", head.date)
    msg.set_raw("Message-ID", personal["Message-ID"])
    msg.set_raw("List-Id", head.list_id)
    msg.set_raw("List-Unsubscribe", personal["List-Unsubscribe"])
    msg.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    msg.set_raw("Auto-Submitted", "auto-generated")
    msg.set_raw("Precedence", "bulk")
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html_body, subtype="html", charset="utf-8", cte="quoted-printable")
    msg.set_boundary(head.boundary)
    for part in msg.iter_parts():
        del part["MIME-Version"]  # add_alternative copies it into the parts; it belongs on top only
    return msg


def _clean_recipient(recipient: Recipient) -> tuple[str, str, str]:
    email = recipient.email
    if not _ADDRESS.fullmatch(email) or len(email) > 254:
        raise SubscriberError(f"cannot address a message to {email!r}")
    url = recipient.unsubscribe_url
    if _URL_UNSAFE.search(url) or len(url) > MAX_URL:
        raise SubscriberError(f"unsubscribe URL for {email} is not a plain ASCII URL: {url!r}")
    prefs = recipient.preferences_url
    # No "&" either: escaped it would outgrow the bytes render keeps for this link (FILLED_MAX).
    if _URL_UNSAFE.search(prefs) or "&" in prefs or len(prefs) > MAX_URL:
        raise SubscriberError(f"preferences URL for {email} is not a plain ASCII URL: {prefs!r}")
    return clean_text(recipient.name, MAX_NAME), email, url


def _values(settings: ComposeSettings, name: str, email: str, url: str, prefs: str) -> placeholders.Values:
    title = settings.title or settings.list_id.rpartition("<")[0].strip()
    return placeholders.values_for(name, email, url, title=title, preferences_url=prefs)


def _subject(text: str) -> str:
    """The folded Subject value of a personalised subject line."""
    return fold_text("Subject", clean_text(text, MAX_SUBJECT))
