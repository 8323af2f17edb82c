"""Trusted ``Host`` headers (DNS rebinding) and who gets the preview, over real HTTP on 127.0.0.1.

The app runs under uvicorn (``tests.fixtures.web_server``) and, for the
command-line cases, as ``python -m digest serve|preview`` on a free loopback
port. A request for another host is made by sending another ``Host`` header
to 127.0.0.1, as a rebinding browser would.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.netutil import is_loopback_host
from digest.web import create_app
from digest.web.hosts import host_allowed, parse_host, public_host
from tests.fixtures.web_server import running
from tests.test_cli_serving import free_port, interrupt, start
from tests.test_web import TITLE, FakeBackend

BASE_URL = "https://news.example.org"


@pytest.fixture
def base() -> Iterator[str]:
    app = create_app(FakeBackend(), title=TITLE, base_url=BASE_URL)
    with running(app) as url:
        yield url


def get(url: str, path: str, host: str | None) -> httpx.Response:
    headers = {} if host is None else {"Host": host}
    return httpx.get(url + path, headers=headers, trust_env=False)


def raw_request(url: str, request: bytes) -> bytes:
    """Send ``request`` as is and read the whole answer (the server closes after it)."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- the pure checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST.", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1"]
)
def test_loopback_names(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    ["", "0.0.0.0", "::", "10.0.0.1", "192.168.1.10", "2001:db8::1", "example.org", "localhost.example.org",
     "127.0.0.1.nip.io", "localhost..", "[::2]"],
)  # fmt: skip
def test_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("news.example.org", True),
        ("NEWS.example.org", True),
        ("news.example.org:443", True),
        ("news.example.org.", True),
        ("news.example.org:8443", False),
        ("news.example.org:80", False),
        ("127.0.0.1:8025", True),
        ("localhost:1", True),
        ("[::1]:8025", True),
        ("evil.example", False),
        ("news.example.org.evil.example", False),
        ("evil.example@news.example.org", False),
        ("news.example.org:443:443", False),
        ("news.example.org:99999999", False),
        ("", False),
        ("news.example.org/x", False),
    ],
)
def test_host_allowed(value: str, allowed: bool) -> None:
    assert host_allowed(value, public_host(BASE_URL)) is allowed


def test_a_base_url_port_must_be_written_in_the_host() -> None:
    public = public_host("http://news.example.org:8080/digest")
    assert public == ("news.example.org", 8080, False)
    assert host_allowed("news.example.org:8080", public)
    assert not host_allowed("news.example.org", public)
    assert public_host("http://news.example.org") == ("news.example.org", 80, True)
    assert public_host("http://[2001:db8::1]:81/") == ("[2001:db8::1]", 81, False)
    assert public_host("ftp://news.example.org") is None and public_host("http://x:bad") is None
    assert parse_host("[2001:DB8::1]:81") == ("[2001:db8::1]", 81)


# -- over HTTP ---------------------------------------------------------------------


def test_another_host_gets_400(base: str) -> None:
    for path in ("/", "/healthz", "/u/tok-ann.sig", "/issues/2018-W01/all.html", "/nowhere"):
        r = get(base, path, "evil.example")
        assert r.status_code == 400, path
        assert r.text == "unknown host"
        assert r.headers["x-content-type-options"] == "nosniff"  # the security headers still apply
    assert get(base, "/", "evil.example:" + str(urlsplit(base).port)).status_code == 400
    assert get(base, "/", "news.example.org:8443").status_code == 400


def test_the_public_host_and_loopback_names_are_answered(base: str) -> None:
    port = urlsplit(base).port
    assert get(base, "/healthz", None).status_code == 200  # httpx sends Host: 127.0.0.1:PORT
    assert get(base, "/healthz", f"127.0.0.1:{port}").status_code == 200
    assert get(base, "/healthz", f"localhost:{port}").status_code == 200
    assert get(base, "/healthz", "[::1]").status_code == 200
    assert get(base, "/healthz", "news.example.org").status_code == 200
    assert get(base, "/issues/2018-W01/all.html", "news.example.org:443").status_code == 200
    page = get(base, "/", "news.example.org")
    assert page.status_code == 200 and "Preview" in page.text


def test_a_request_without_a_host_or_with_two_gets_400(base: str) -> None:
    assert raw_request(base, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    two = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    assert raw_request(base, two).startswith(b"HTTP/1.1 400 ")
    good = b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    assert raw_request(base, good).startswith(b"HTTP/1.1 200 ")


def test_without_a_base_url_only_loopback_names_are_answered() -> None:
    with running(create_app(FakeBackend(), title=TITLE)) as url:
        assert get(url, "/healthz", None).status_code == 200
        assert get(url, "/healthz", "news.example.org").status_code == 400


# -- the commands ------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    assert CliRunner().invoke(cli, ["init", str(folder)]).exit_code == 0
    path = folder / "digest.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace('title = "Cyber Weekly"', f'title = "Cyber Weekly"\nsecret = "{"s" * 32}"', 1)
    text, n = _set_base_url(text, BASE_URL)
    assert n == 1
    path.write_text(text, encoding="utf-8")
    return path


def _set_base_url(text: str, url: str) -> tuple[str, int]:
    lines = text.splitlines(keepends=True)
    n = 0
    for i, line in enumerate(lines):
        if line.startswith("base_url"):
            lines[i] = f'base_url = "{url}"\n'
            n += 1
    return "".join(lines), n


def test_serve_without_preview_hides_it_and_checks_the_host(config: Path) -> None:
    proc, base = start(config, "serve", "--host", "127.0.0.1")
    for path in ("/", "/preview/next/all.html", "/_fingerprint", "/_static/preview.js"):
        assert get(base, path, "news.example.org").status_code == 404, path
    assert get(base, "/healthz", "news.example.org").status_code == 200
    assert get(base, "/healthz", "evil.example").status_code == 400
    assert get(base, "/u/not-a-token", None).status_code == 400  # the unsubscribe endpoint is on
    code, out, _ = interrupt(proc)
    assert code == 0
    assert out.splitlines()[:2] == [f"serving on {base}/ (Ctrl-C stops)", "preview: off (--preview turns it on)"]


def test_serve_with_preview_shows_it_to_the_allowed_hosts_only(config: Path) -> None:
    proc, base = start(config, "serve", "--host", "127.0.0.1", "--preview")
    assert get(base, "/", None).status_code == 200
    assert get(base, "/", "news.example.org").status_code == 200
    assert get(base, "/", "evil.example").status_code == 400
    code, out, _ = interrupt(proc)
    assert code == 0 and out.splitlines()[1] == "preview: on (--preview)"


def test_preview_answers_loopback_and_refuses_rebinding(config: Path) -> None:
    proc, base = start(config, "preview")
    port = urlsplit(base).port
    assert get(base, "/", f"127.0.0.1:{port}").status_code == 200
    assert get(base, "/", f"localhost:{port}").status_code == 200
    assert get(base, "/", "attacker.example").status_code == 400
    assert get(base, "/_fingerprint", f"attacker.example:{port}").status_code == 400
    code, _, _ = interrupt(proc)
    assert code == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_preview_refuses_a_public_host(config: Path, host: str) -> None:
    result = CliRunner().invoke(
        cli, ["--config", str(config), "preview", "--host", host, "--port", str(free_port())], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --host: the preview shows subscribers' addresses")
    assert repr(host) in result.stderr
