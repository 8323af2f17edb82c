"""Which ``Host`` headers the web app answers: the public ``base_url`` host and loopback names.

A page served under any ``Host`` can be read by a hostile site through DNS
rebinding: the attacker's name resolves to 127.0.0.1, and the browser then
treats the laptop's ``digest preview`` as the attacker's own origin. Refusing
every ``Host`` but the configured one (with its port) and loopback names
(with any port) closes that. Starlette's ``TrustedHostMiddleware`` compares
names only; this one also checks the port of ``base_url`` and knows loopback.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.netutil import is_loopback_host

_DEFAULT_PORTS = {"http": 80, "https": 443}
# host = reg-name / IPv4 / "[" IPv6 "]", then an optional port (RFC 9110 §7.2, RFC 3986 §3.2.2).
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``"Example.org:8080"`` → ``("example.org", 8080)``; ``None`` when it is not a host[:port]."""
    match = _HOST.fullmatch(value.strip())
    if match is None:
        return None
    port = match["port"]
    return match["name"].lower(), int(port) if port is not None else None


def public_host(base_url: str) -> tuple[str, int, bool] | None:
    """The host and port that ``base_url`` names, and whether that port is its scheme's own.

    ``"https://news.example.org/"`` → ``("news.example.org", 443, True)``;
    ``None`` for an empty or unusable URL.
    """
    if not base_url:
        return None
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.scheme not in _DEFAULT_PORTS:
        return None
    name = parts.hostname.lower()
    if ":" in name:
        name = f"[{name}]"
    default = _DEFAULT_PORTS[parts.scheme]
    return name, default if port is None else port, port in (None, default)


def host_allowed(value: str, public: tuple[str, int, bool] | None) -> bool:
    """Whether a request's ``Host`` header is a loopback name (any port) or the public host.

    A header without a port matches the public host only when ``base_url``
    uses its scheme's port: a reverse proxy passes on the host as the
    browser wrote it (``news.example.org``), though it talks plain HTTP.
    """
    parsed = parse_host(value)
    if parsed is None:
        return False
    name, port = parsed
    if is_loopback_host(name):
        return True
    if public is None:
        return False
    public_name, public_port, implicit = public
    if name.rstrip(".") != public_name.rstrip("."):
        return False
    return port == public_port or (port is None and implicit)


class HostGuard:
    """ASGI middleware: 400 for any HTTP request whose ``Host`` is not allowed (see ``host_allowed``)."""

    def __init__(self, app: ASGIApp, base_url: str = "") -> None:
        self.app = app
        self.public = public_host(base_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        hosts = Headers(scope=scope).getlist("host")
        # No Host (HTTP/1.0) or two of them is as suspicious as a wrong one.
        if len(hosts) != 1 or not host_allowed(hosts[0], self.public):
            response = PlainTextResponse("unknown host", status_code=400, headers={"Cache-Control": "no-store"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
