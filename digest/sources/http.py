"""The one hardened fetcher: a source's URL or local path → bytes.

Limits, all from ``FetchSettings``:

- ``connect_timeout`` for connecting, and ``deadline`` for the whole fetch
  of one source, redirects included (httpx's own timeouts are per read, so
  a server dribbling a byte a second would never trip them);
- at most ``max_redirects`` redirects, each to an http(s) URL;
- at most ``max_bytes`` of body *after* decompression, counted while
  streaming: decompression is done here, chunk by chunk, never producing
  more than the remaining budget, so a gzip bomb is stopped after
  ``max_bytes`` and not after it has filled memory;
- http and https only; local files (absolute paths) are read with the same
  byte cap. A redirect never leads to a file or any other scheme;
- no connection to a loopback, private, link-local or otherwise non-public
  address, on the first request or on any redirect hop, unless
  ``allow_private`` trusts it (the guard, and why, is in ``netguard``).
  The report says ``refused: private address (10.0.0.5)`` for the
  configured URL and ``refused: redirect to a private address (127.0.0.2)``
  for a hop.

Conditional requests: the ETag and Last-Modified kept in ``SourceState`` are
sent as If-None-Match / If-Modified-Since; a 304 comes back as
``Fetched(not_modified=True)``.

Every httpx error becomes a ``FetchError`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx

from digest import urls
from digest.config import FetchSettings
from digest.errors import AddressRefused, FetchError
from digest.models import Source, SourceState
from digest.sources.netguard import AddressPolicy, GuardedTransport, Resolver, resolve

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, text/html;q=0.7, text/plain;q=0.7, "
    "*/*;q=0.5"
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LOCAL_TYPES = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".rdf": "application/rdf+xml",
    ".atom": "application/atom+xml",
    ".json": "application/json",
    ".html": "text/html",
    ".htm": "text/html",
    ".txt": "text/plain",
}


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a fetch brought back.

    ``url`` is where the body came from (after redirects). For a 304,
    ``not_modified`` is true and ``body`` is empty.
    """

    url: str
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


def make_client(
    settings: FetchSettings, *, resolver: Resolver = resolve, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """The client all remote sources of one gathering share.

    Its transport holds the private-address guard: a client made any other
    way must not be passed to ``fetch``. ``resolver`` and ``verify`` are the
    guard's and httpx's (tests give their own DNS answers and CA).
    """
    limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency)
    return httpx.AsyncClient(
        headers={"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"},
        timeout=httpx.Timeout(settings.deadline, connect=settings.connect_timeout),
        follow_redirects=False,
        transport=GuardedTransport(
            AddressPolicy.allowing(settings.allow_private), limits=limits, verify=verify, resolver=resolver
        ),
    )


async def fetch(client: httpx.AsyncClient, source: Source, state: SourceState, settings: FetchSettings) -> Fetched:
    """Fetch ``source`` within the limits of ``settings``; raise ``FetchError`` otherwise."""
    if not source.is_remote:
        return await asyncio.to_thread(read_local, source, settings.max_bytes)
    try:
        return await asyncio.wait_for(_fetch_remote(client, source, state, settings), settings.deadline)
    except TimeoutError as exc:
        raise FetchError(source.name, f"timed out after {settings.deadline:g}s") from exc


def read_local(source: Source, max_bytes: int) -> Fetched:
    """Read a local file, refusing one over ``max_bytes``."""
    path = Path(source.url)
    if "://" in source.url or not path.is_absolute():
        raise FetchError(source.name, f"only http(s) URLs or absolute paths can be fetched, got {source.url!r}")
    try:
        with path.open("rb") as f:
            body = f.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise FetchError(source.name, f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise FetchError(source.name, f"is a directory, not a file: {path}") from exc
    except OSError as exc:
        raise FetchError(source.name, f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(body) > max_bytes:
        raise FetchError(source.name, f"body over {max_bytes} bytes")
    return Fetched(url=source.url, body=body, content_type=_LOCAL_TYPES.get(path.suffix.lower(), ""))


def _conditional(state: SourceState) -> dict[str, str]:
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


async def _fetch_remote(
    client: httpx.AsyncClient, source: Source, state: SourceState, settings: FetchSettings
) -> Fetched:
    url = _checked(source, source.url)
    headers = _conditional(state)
    for hop in range(settings.max_redirects + 1):
        try:
            async with client.stream("GET", url, headers=headers) as resp:
                if not 200 <= resp.status_code < 300:
                    await _drain(resp)
                if resp.status_code in _REDIRECTS and "location" in resp.headers:
                    url = _redirect_target(source, resp)
                    continue
                if resp.status_code == 304:
                    return Fetched(url=str(resp.url), not_modified=True)
                if not 200 <= resp.status_code < 300:
                    raise FetchError(source.name, f"HTTP {resp.status_code} {resp.reason_phrase}".strip())
                body = await _read_capped(source, resp, settings.max_bytes)
                return Fetched(
                    url=str(resp.url),
                    body=body,
                    content_type=resp.headers.get("content-type", ""),
                    etag=resp.headers.get("etag"),
                    last_modified=resp.headers.get("last-modified"),
                )
        except httpx.HTTPError as exc:
            raise FetchError(source.name, _describe(exc, settings)) from exc
        except httpx.InvalidURL as exc:  # not an HTTPError in httpx
            raise FetchError(source.name, f"invalid URL: {exc}") from exc
        except AddressRefused as exc:
            where = "redirect to a private address" if hop else "private address"
            raise FetchError(source.name, f"refused: {where} ({exc.address})") from exc
    raise FetchError(source.name, f"too many redirects (more than {settings.max_redirects})")


def _redirect_target(source: Source, resp: httpx.Response) -> str:
    location = resp.headers["location"].strip()
    try:
        target = resp.url.join(location)
    except httpx.InvalidURL as exc:
        raise FetchError(source.name, f"redirect to an invalid URL: {location!r}") from exc
    if target.scheme not in ("http", "https"):
        raise FetchError(source.name, f"redirect to a non-http(s) URL refused: {location!r}")
    return _checked(source, str(target))


def _checked(source: Source, url: str) -> str:
    """``url`` if it is a well-formed http(s) URL; ``FetchError`` otherwise."""
    try:
        return urls.http_url(url)
    except urls.InvalidURL as exc:
        raise FetchError(source.name, str(exc)) from exc


def _describe(exc: httpx.HTTPError, settings: FetchSettings) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"could not connect within {settings.connect_timeout:g}s"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {settings.deadline:g}s"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {' '.join(str(exc).split()) or 'connection failed'}"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"invalid URL: {exc}"
    detail = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class _Decoder:
    """Incremental Content-Encoding decoder that never yields more than asked for."""

    def __init__(self, source: Source, encoding: str) -> None:
        self.source = source
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise FetchError(source.name, f"unsupported Content-Encoding {encoding!r}")
        self.coding = codings[0] if codings else None
        self.zlib: zlib._Decompress | None = None
        if self.coding in ("gzip", "x-gzip"):
            self.zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.coding == "deflate":
            self.zlib = zlib.decompressobj()
        self.raw_deflate_tried = False

    def feed(self, data: bytes, budget: int) -> bytes:
        """Decode ``data``, producing at most ``budget + 1`` bytes (one more tells "too big")."""
        if self.zlib is None:
            return data
        try:
            out = self.zlib.decompress(data, budget + 1)
            # Further gzip members (concatenated gzip) are legal; decode them too.
            while self.zlib.eof and self.zlib.unused_data and len(out) <= budget:
                rest = self.zlib.unused_data
                self.zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out += self.zlib.decompress(rest, budget + 1 - len(out))
            self.raw_deflate_tried = True  # only the start of a body can be raw deflate
            return out
        except zlib.error as exc:
            if self.coding == "deflate" and not self.raw_deflate_tried:
                # Some servers send raw deflate (no zlib header) for "deflate".
                self.raw_deflate_tried = True
                self.zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.feed(data, budget)
            raise FetchError(self.source.name, f"corrupt {self.coding} body: {exc}") from exc


#: The most of a body read only to keep its connection open for the next request.
DRAIN_BYTES = 65_536


async def _drain(resp: httpx.Response) -> None:
    """Read a body we do not want (a 304's, a redirect's, an error page), so the connection can be reused.

    httpcore puts a connection back in the pool only when its response was
    read to the end; left unread, every 304 of a re-fetch cost a new TCP
    (and TLS) connection. A body over ``DRAIN_BYTES`` is not worth it: the
    connection is closed instead, as before.
    """
    left = DRAIN_BYTES
    async for raw in resp.aiter_raw():
        left -= len(raw)
        if left < 0:
            return


async def _read_capped(source: Source, resp: httpx.Response, max_bytes: int) -> bytes:
    declared = resp.headers.get("content-length", "")
    encoding = resp.headers.get("content-encoding", "")
    if declared.isdigit() and int(declared) > max_bytes and not encoding:
        raise FetchError(source.name, f"body over {max_bytes} bytes")
    decoder = _Decoder(source, encoding)
    body = bytearray()
    async for raw in resp.aiter_raw():
        body += decoder.feed(raw, max_bytes - len(body))
        if len(body) > max_bytes:
            raise FetchError(source.name, f"body over {max_bytes} bytes")
    return bytes(body)
