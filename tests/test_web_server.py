"""Slow and piled-up connections (slowloris) against the real server on 127.0.0.1.

The server runs with the same protocol as ``digest serve`` but a read timeout
of a second and a cap of 100 connections, so the test sees both act.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import anyio.to_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digest.web import create_app
from digest.web.server import GuardedH11Protocol
from tests.fixtures.web_server import running
from tests.test_web import TITLE, FakeBackend

READ_TIMEOUT = 1.0
CAP = 100
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture
def base() -> Iterator[str]:
    with running(create_app(FakeBackend(), title=TITLE), read_timeout=READ_TIMEOUT, max_connections=CAP) as url:
        yield url


def connect(base: str) -> socket.socket:
    parts = urlsplit(base)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    return socket.create_connection((parts.hostname, parts.port), timeout=5)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (readable with end of file), without waiting."""
    poller = select.poll()  # not select(): it refuses descriptors past 1023
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return True
    return data == b"" or closed_by_server(sock)  # an answer came first: read on


def wait_closed(socks: list[socket.socket], within: float) -> float:
    """Seconds until every socket was closed by the server; fails after ``within``."""
    start = time.monotonic()
    while not all(closed_by_server(s) for s in socks):
        if time.monotonic() - start > within:
            open_ = sum(not closed_by_server(s) for s in socks)
            raise AssertionError(f"{open_} of {len(socks)} connections still open after {within} s")
        time.sleep(0.05)
    return time.monotonic() - start


def test_half_open_requests_are_closed_and_a_fresh_request_is_answered(base: str) -> None:
    slow: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = connect(base)
            sock.sendall(PARTIAL)
            slow.append(sock)
        opened = time.monotonic()
        # The cap: a new connection pushes out the oldest that is still sending its request.
        time.sleep(0.3)
        still_open = [s for s in slow if not closed_by_server(s)]
        assert len(still_open) <= CAP
        assert all(closed_by_server(s) for s in slow[:100])  # the oldest went first
        # A whole request is answered at once, half-open connections or not.
        fresh = httpx.get(base + "/healthz", trust_env=False, timeout=5)
        assert fresh.status_code == 200 and fresh.text == "ok"
        # The read timeout closes the rest, and not before it is due.
        assert not any(closed_by_server(s) for s in slow[150:])
        waited = wait_closed(slow, within=READ_TIMEOUT + 5)
        assert time.monotonic() - opened >= READ_TIMEOUT * 0.9
        assert waited < READ_TIMEOUT + 5
    finally:
        for sock in slow:
            sock.close()


def test_a_trickled_header_does_not_reset_the_clock(base: str) -> None:
    sock = connect(base)
    try:
        start = time.monotonic()
        for byte in PARTIAL:
            if closed_by_server(sock):
                break
            sock.sendall(bytes([byte]))
            time.sleep(0.05)
        wait_closed([sock], within=READ_TIMEOUT + 3)
        assert READ_TIMEOUT * 0.9 <= time.monotonic() - start < READ_TIMEOUT + 3
    finally:
        sock.close()


def test_the_clock_restarts_for_the_next_request_on_a_kept_alive_connection(base: str) -> None:
    sock = connect(base)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok"):
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 ")
        time.sleep(READ_TIMEOUT * 0.6)
        sock.sendall(PARTIAL)  # one byte would also cancel uvicorn's own keep-alive timer
        time.sleep(READ_TIMEOUT * 0.9)
        assert closed_by_server(sock)  # 1.5 timeouts after the response, 0.9 after the first byte
    finally:
        sock.close()


def test_a_slow_request_that_completes_in_time_is_answered(base: str) -> None:
    sock = connect(base)
    try:
        sock.sendall(PARTIAL)
        time.sleep(READ_TIMEOUT * 0.5)
        sock.sendall(b"1\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok"):
            chunk = sock.recv(65536)
            assert chunk, "closed before the answer"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        sock.close()


def test_when_every_connection_is_busy_a_new_one_gets_503() -> None:
    release = threading.Event()

    async def hold(request: Request) -> Response:
        await anyio.to_thread.run_sync(release.wait)
        return PlainTextResponse("held")

    app = Starlette(routes=[Route("/hold", hold)])
    with running(app, read_timeout=READ_TIMEOUT, max_connections=1) as url:
        busy = connect(url)
        try:
            busy.sendall(b"GET /hold HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            time.sleep(0.2)
            turned_away = httpx.get(url + "/hold", trust_env=False, timeout=5)
            assert turned_away.status_code == 503 and turned_away.text == "busy\n"
            release.set()
            assert busy.recv(65536).startswith(b"HTTP/1.1 200 ")
        finally:
            release.set()
            busy.close()


def test_the_limits_must_make_sense() -> None:
    guarded = GuardedH11Protocol.limited(READ_TIMEOUT, 1)
    assert guarded.max_connections == 1 and guarded.read_timeout == READ_TIMEOUT
    for timeout, cap in ((0.0, 10), (float("nan"), 10), (-1.0, 10), (1.0, 0)):
        with pytest.raises(ValueError):
            GuardedH11Protocol.limited(timeout, cap)
