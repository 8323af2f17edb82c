"""The one place URLs are parsed, joined, canonicalised and checked.

Every URL digest reads (a source's address, a feed's link, an HTML
``href``, a redirect's ``Location``, a link in an entry's content) goes
through here. The standard library raises a ``ValueError`` for some bad
URLs (``http://[::1``, port 99999), silently accepts others (control
characters, a host with spaces) and leaves the rest to whoever reads
``.port`` later; here each of them becomes one ``InvalidURL`` at the moment
the text is parsed, so callers catch exactly one exception.

- ``parse(text)`` → ``URL``: any scheme; ``InvalidURL`` when malformed.
- ``http_url(text)`` → the text, if it is an absolute http(s) URL with a valid host.
- ``is_http(text)`` → the same as a yes/no.
- ``join(base, ref)`` → ``ref`` resolved against ``base`` (both checked).
- ``link(base, ref)`` → ``join`` then ``http_url``: a usable link for an entry.
- ``canonical(text)`` → a form for comparing links: lower-case scheme and
  host, default port, fragment and tracking parameters (``utm_*``,
  ``fbclid``, ``gclid``, …) dropped, the query sorted, an empty path ``/``.
  Idempotent: ``canonical(canonical(u)) == canonical(u)``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from digest.errors import InvalidURL

__all__ = ["URL", "InvalidURL", "canonical", "http_url", "is_http", "join", "link", "parse"]

#: ASCII control characters (and DEL): urlsplit drops tabs and newlines silently, keeps the rest.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: A host name: letters (any script), digits, hyphens, underscores, dots; no spaces or delimiters.
_HOST_NAME = re.compile(r"^[\w\-.~%!$&'()*+,;=]+$")
_HTTP = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TRACKING = frozenset(
    {
        "fbclid", "gclid", "dclid", "gclsrc", "msclkid", "yclid", "twclid", "igshid", "mc_cid",
        "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "ref_src", "ref_url", "spm", "scid", "oly_anon_id",
        "oly_enc_id", "vero_id", "wickedid", "_ga", "_gl", "cmpid", "s_cid", "ito",
    }
)  # fmt: skip
#: Longest URL worth reading; anything longer is junk or an attack (browsers stop near here too).
MAX_LENGTH = 32_768


@dataclass(frozen=True, slots=True)
class URL:
    """A parsed, checked URL: lower-case scheme and host (IPv6 without brackets), the port if one was given.

    ``text`` is the URL as parsed (stripped).
    """

    scheme: str
    host: str
    port: int | None
    path: str
    query: str
    fragment: str
    username: str = ""
    password: str = ""
    text: str = ""

    @property
    def is_http(self) -> bool:
        return self.scheme in _HTTP and bool(self.host)

    @property
    def netloc_host(self) -> str:
        """The host as written in a netloc: IPv6 addresses in brackets."""
        return f"[{self.host}]" if ":" in self.host else self.host


def _bad(text: str, reason: str) -> InvalidURL:
    return InvalidURL(f"invalid URL {text!r}: {reason}")


def parse(text: str) -> URL:
    """``text`` (stripped) as a ``URL``; ``InvalidURL`` when it is not one."""
    if not isinstance(text, str):
        raise _bad(repr(text), "not text")
    text = text.strip()
    if not text:
        raise _bad(text, "empty")
    if len(text) > MAX_LENGTH:
        raise _bad(text[:80] + "…", f"longer than {MAX_LENGTH} characters")
    if _CONTROL.search(text):
        raise _bad(text, "control characters")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError when out of range or not a number
        host = parts.hostname or ""
        username, password = parts.username or "", parts.password or ""
    except ValueError as exc:
        raise _bad(text, str(exc) or type(exc).__name__) from exc
    if parts.netloc and "[" in parts.netloc.rpartition("@")[2]:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError as exc:
            raise _bad(text, f"invalid IPv6 address {host!r}") from exc
    elif host and not _HOST_NAME.match(host):
        raise _bad(text, f"invalid host {host!r}")
    return URL(
        text=text,
        scheme=parts.scheme.lower(),
        host=host,
        port=port,
        path=parts.path,
        query=parts.query,
        fragment=parts.fragment,
        username=username,
        password=password,
    )


def http_url(text: str) -> str:
    """``text`` stripped, if it is an absolute http(s) URL with a host; ``InvalidURL`` otherwise."""
    url = parse(text)
    if url.scheme not in _HTTP:
        raise _bad(url.text, "not an http(s) URL")
    if not url.host:
        raise _bad(url.text, "no host")
    return url.text


def is_http(text: str) -> bool:
    """Whether ``text`` is an absolute http(s) URL with a valid host."""
    try:
        http_url(text)
    except InvalidURL:
        return False
    return True


def join(base: str, ref: str) -> str:
    """``ref`` resolved against ``base``; ``InvalidURL`` when either (or the result) is malformed."""
    ref_url = parse(ref)
    if not base:
        return ref_url.text
    parse(base)
    try:
        joined = urljoin(base.strip(), ref_url.text)
    except ValueError as exc:
        raise _bad(ref, str(exc)) from exc
    return parse(joined).text


def link(base: str | None, ref: str) -> str:
    """An entry's link: ``ref`` joined to ``base`` (when given), then required to be http(s)."""
    return http_url(join(base or "", ref))


def _is_tracking(key: str) -> bool:
    k = key.lower()
    return k.startswith(("utm_", "hsa_", "pk_", "mtm_")) or k in _TRACKING


def canonical(text: str, *, keep_fragment: bool = False) -> str:
    """``text`` in canonical form for comparing links (see the module docstring); ``InvalidURL`` if malformed."""
    url = parse(text)
    host = url.netloc_host.lower()
    if url.port is not None and _DEFAULT_PORTS.get(url.scheme) != url.port:
        host = f"{host}:{url.port}"
    if url.username or url.password:
        host = f"{url.username}{':' + url.password if url.password else ''}@{host}"
    pairs = parse_qsl(url.query, keep_blank_values=True)
    query = urlencode(sorted((k, v) for k, v in pairs if not _is_tracking(k)))
    path = url.path or ("/" if host else "")
    if not host and path.startswith("//"):
        path = "/." + path  # keep an empty authority from swallowing the path on the next parse
    fragment = url.fragment if keep_fragment else ""
    out = urlunsplit((url.scheme, host, path, query, fragment))
    return parse(out).text
