"""One subscriber row: its address checked and normalised, its cells made a ``Subscriber``.

``parse_row`` validates one row; ``RowParser`` does the same for the many
rows of one list, checking each distinct ``themes`` and ``timezone`` cell
once. ``digest.subscribers`` (the list files) re-exports what is public here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from digest.errors import SubscriberError
from digest.models import Subscriber

#: Octets allowed before the @ of an address (RFC 5321).
MAX_LOCAL_PART = 64
_SPACES = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\s]+")

#: A plain ASCII address that email-validator would accept as it is: dot-atoms without empty
#: parts, LDH domain labels, an alphabetic top-level domain. Lists are read on every send;
#: this shortcut spares the full validation (about 0.5 ms an address) for the usual case.
_PLAIN_ADDRESS = re.compile(
    r"(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?=.{4,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def normalise_email(raw: str) -> str:
    """A valid address with its domain lowercased (IDNA), the local part as given.

    Raises ``SubscriberError`` saying why the address is unusable.
    """
    raw = raw.strip()
    local = raw.rpartition("@")[0]
    local_octets = len(local) if local.isascii() else len(local.encode("utf-8"))
    if local_octets > MAX_LOCAL_PART:
        # RFC 5321 §4.5.3.1.1; email-validator lets a long local part through.
        raise SubscriberError(
            f"invalid address {raw!r}: the part before the @ is {local_octets} octets, at most {MAX_LOCAL_PART}"
        )
    if _PLAIN_ADDRESS.fullmatch(raw):
        local, domain = raw.rsplit("@", 1)
        domain = domain.lower()
        # Special-use domains (example.invalid, x.local, ...) get the validator's own verdict.
        if domain.rsplit(".", 1)[-1] not in SPECIAL_USE_DOMAIN_NAMES:
            return f"{local}@{domain}"
    try:
        info = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid address {raw!r}: {exc}") from exc
    return f"{raw.rsplit('@', 1)[0]}@{info.ascii_domain.lower()}"


def parse_row(
    email: str,
    name: str = "",
    themes: str | Iterable[str] = "",
    timezone: str | None = None,
    known_themes: Collection[str] | None = None,
) -> Subscriber:
    """One validated ``Subscriber`` from raw cell values; ``SubscriberError`` if invalid."""
    return RowParser(known_themes).parse(email, name, themes, timezone)


class RowParser:
    """``parse_row`` for many rows of one list: what depends only on a cell's text is worked out once.

    A list repeats a few theme choices and time zones over and over, so each
    distinct ``themes`` or ``timezone`` cell is checked once, and every row
    with it shares one ``frozenset`` (a million rows, a few sets).
    """

    def __init__(self, known_themes: Collection[str] | None) -> None:
        self.known = known_themes
        self.canonical = None if known_themes is None else {t.casefold(): t for t in known_themes}
        self.themes: dict[str, frozenset[str] | SubscriberError] = {}
        self.zones: dict[str, SubscriberError | None] = {}

    def parse(self, email: str, name: str, themes: str | Iterable[str], timezone: str | None) -> Subscriber:
        address = normalise_email(email)
        if isinstance(themes, str):
            chosen = self.themes.get(themes)
            if chosen is None:
                chosen = self.themes[themes] = self._themes(themes.split(";"))
        else:
            chosen = self._themes(themes)
        if isinstance(chosen, SubscriberError):
            raise SubscriberError(str(chosen))
        tz = (timezone or "").strip() or None
        if tz is not None:
            if tz not in self.zones:
                self.zones[tz] = _zone_problem(tz)
            problem = self.zones[tz]
            if problem is not None:
                raise SubscriberError(str(problem))
        # The usual name (printable ASCII, single spaces) needs no clean-up.
        if name.isascii() and name.isprintable() and "  " not in name:
            clean = name.strip()
        else:
            clean = _SPACES.sub(" ", name).strip()
        return Subscriber(email=address, name=clean, themes=chosen, timezone=tz)

    def _themes(self, names: Iterable[str]) -> frozenset[str] | SubscriberError:
        chosen = [t for t in (n.strip() for n in names) if t]
        if self.canonical is not None:
            unknown = [t for t in chosen if t.casefold() not in self.canonical]
            if unknown:
                known = ", ".join(self.known or ()) or "none"
                return SubscriberError(f"unknown theme {unknown[0]!r} (known: {known})")
            chosen = [self.canonical[t.casefold()] for t in chosen]
        return frozenset(chosen)


def _zone_problem(tz: str) -> SubscriberError | None:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return SubscriberError(f"unknown time zone {tz!r} (use an IANA name like Europe/Berlin)")
    return None


def email_key(email: str) -> str:
    """``email.lower()``, the key lists compare addresses by: the same string when it is lowercase already.

    A million keys then cost no second copy of a million addresses.
    """
    low = email.lower()
    return email if low == email else low
