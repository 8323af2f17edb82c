"""Running the web app under uvicorn, hardened against slow and piled-up connections.

uvicorn has no timeout for reading a request: its keep-alive timer is reset
by every byte received, so a client that trickles a header a byte at a time
(slowloris) holds its connection for ever, and a few hundred such clients
hold the server. Its ``limit_concurrency`` counts those half-open
connections too, so it would answer 503 to everyone instead of helping.
``GuardedH11Protocol`` adds what is missing, at the connection:

* a read deadline: a request's headers and body must arrive within
  ``read_timeout`` seconds of the connection being ready for it (opened, or
  done with the previous response), else the connection is closed;
* a connection cap: when ``max_connections`` are open, a new connection
  closes the oldest one still waiting for its request, and only when every
  open connection is busy with a request is the new one turned away (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from digest.errors import ConfigError

log = logging.getLogger(__name__)

#: Seconds a client has to send a whole request (headers and body).
READ_TIMEOUT = 10.0
#: Connections served at once.
MAX_CONNECTIONS = 100
#: Seconds an idle keep-alive connection stays open between requests.
KEEP_ALIVE = 5
#: Largest request head h11 buffers (bytes); bigger is a 400.
MAX_HEAD = 16 * 1024

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 5\r\nconnection: close\r\n\r\nbusy\n"
)
_order = itertools.count()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request read deadline and a connection cap (see the module)."""

    read_timeout: float = READ_TIMEOUT
    max_connections: int = MAX_CONNECTIONS

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None
        self._opened = next(_order)

    @classmethod
    def limited(cls, read_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
        """A subclass with these limits (uvicorn builds the protocol from a class)."""
        if not read_timeout > 0 or max_connections < 1:
            raise ValueError("read_timeout must be > 0 and max_connections >= 1")
        attrs = {"read_timeout": float(read_timeout), "max_connections": int(max_connections)}
        return type("GuardedH11Protocol", (cls,), attrs)

    # -- the deadline ----------------------------------------------------------
    def waiting_for_request(self) -> bool:
        """Whether the client still owes (part of) a request: h11 has not seen its end yet."""
        return self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing()

    def _arm(self) -> None:
        if self.waiting_for_request():
            if self._deadline is None:
                self._deadline = self.loop.call_later(self.read_timeout, self._expired)
        elif self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.waiting_for_request():
            log.info("closing a connection that sent no whole request in %.3g s", self.read_timeout)
            self.transport.close()

    # -- uvicorn's hooks -------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self._make_room():
            transport.write(_BUSY)
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Ready for the next request on this connection: its clock starts now.
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    # -- the cap ---------------------------------------------------------------
    def _make_room(self) -> bool:
        """Close the oldest idle connections past the cap; ``False`` when all are busy."""
        live = [c for c in self.connections if not getattr(c, "transport", None) or not c.transport.is_closing()]
        excess = len(live) - self.max_connections
        if excess <= 0:
            return True
        idle = sorted(
            (c for c in live if isinstance(c, GuardedH11Protocol) and c is not self and c.waiting_for_request()),
            key=lambda c: c._opened,
        )
        for victim in idle[:excess]:
            victim.transport.close()
        return len(idle) >= excess


def server_config(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    read_timeout: float = READ_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    log_level: str = "info",
) -> uvicorn.Config:
    """The uvicorn config every digest server runs with (``serve``, ``preview`` and the tests)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,
        http=GuardedH11Protocol.limited(read_timeout, max_connections),
        timeout_keep_alive=KEEP_ALIVE,
        h11_max_incomplete_event_size=MAX_HEAD,
        ws="none",
    )


def check_listen(host: str, port: int) -> None:
    """Raise ``ConfigError`` unless a server could listen on ``host``:``port`` right now.

    Binds (and closes) a socket for every address ``host`` resolves to, with
    the options asyncio's server uses, so a port in use or an address this
    machine does not have is one clear line instead of uvicorn's exit.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def serve(app: Any, host: str = "127.0.0.1", port: int = 8025) -> None:
    """Run ``app`` under uvicorn until interrupted; loopback unless told otherwise.

    Raises ``ConfigError`` when ``host``:``port`` cannot be listened on.
    """
    check_listen(host, port)
    server = uvicorn.Server(server_config(app, host, port))
    # uvicorn stops gracefully on Ctrl-C, then raises it again once it is done.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise ConfigError(f"cannot serve on {host}:{port}: the server did not start")
