"""The one place URLs are parsed, joined, canonicalised and checked.

Every ``ValueError`` the standard library raises on a bad URL (an open IPv6
bracket, a port over 65535, control characters) becomes one ``InvalidURL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from digest.errors import InvalidURL

__all__ = ["URL", "InvalidURL", "canonical", "http_url", "join", "parse"]

_TRACKING = ("utm_", "fbclid", "gclid", "mc_cid", "mc_eid")


@dataclass(frozen=True, slots=True)
class URL:
    """A parsed URL: lowercased scheme and host, the port if one was given."""

    scheme: str
    host: str
    port: int | None
    path: str
    query: str
    fragment: str


def parse(raw: str) -> URL:
    """``raw`` parsed; ``InvalidURL`` when it cannot be."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in raw):
        raise InvalidURL(f"control character in URL {raw!r}")
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
        host = parts.hostname or ""
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {raw!r}: {exc}") from None
    return URL(parts.scheme.lower(), host.lower(), port, parts.path, parts.query, parts.fragment)


def http_url(raw: str) -> str:
    """``raw`` if it is a well-formed http(s) URL with a host; ``InvalidURL`` otherwise."""
    url = parse(raw)
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidURL(f"not an http(s) URL with a host: {raw!r}")
    return raw.strip()


def join(base: str, ref: str) -> str:
    """``ref`` resolved against ``base``; ``InvalidURL`` when either is malformed."""
    try:
        joined = urljoin(base, ref.strip())
    except ValueError as exc:
        raise InvalidURL(f"cannot join {ref!r} to {base!r}: {exc}") from None
    parse(joined)
    return joined


def canonical(raw: str) -> str:
    """The form two spellings of one page share: lowercase scheme and host, no default port,
    no fragment, no tracking parameters."""
    url = parse(raw)
    port = "" if url.port is None or (url.scheme, url.port) in (("http", 80), ("https", 443)) else f":{url.port}"
    host = f"[{url.host}]" if ":" in url.host else url.host
    query = urlencode([(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if not k.startswith(_TRACKING)])
    return urlunsplit((url.scheme, host + port, url.path or "/", query, ""))
