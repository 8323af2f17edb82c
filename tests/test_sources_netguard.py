"""The private-address guard: the policy over every address, literal host forms, and the
connection layer over real loopback servers (DNS answers given by the test, TLS by openssl)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.config import FetchSettings
from digest.models import FetchStatus, Source, SourceKind, SourceResult
from digest.sources import gather_async
from digest.sources.http import make_client
from digest.sources.netguard import (
    AddressPolicy,
    IPAddress,
    is_forbidden,
    literal_address,
    literal_ipv4,
    resolve,
)
from tests.fixtures.http_server import FeedServer, serve

UTC = ZoneInfo("UTC")
V4 = ipaddress.IPv4Network
V6 = ipaddress.IPv6Network

# The networks the issue names, written out here rather than read from the module under test.
REFUSED_V4 = [
    V4("127.0.0.0/8"),  # loopback
    V4("10.0.0.0/8"),  # RFC 1918
    V4("172.16.0.0/12"),
    V4("192.168.0.0/16"),
    V4("169.254.0.0/16"),  # link-local, 169.254.169.254 among them
    V4("0.0.0.0/8"),  # unspecified
    V4("100.64.0.0/10"),  # CGNAT
    V4("224.0.0.0/4"),  # multicast
    V4("240.0.0.0/4"),  # reserved, broadcast
]
REFUSED_V6 = [
    V6("::/128"),
    V6("::1/128"),
    V6("fc00::/7"),  # ULA
    V6("fe80::/10"),  # link-local
    V6("ff00::/8"),  # multicast
    V6("::/96"),  # IPv4-compatible (deprecated)
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "151.101.1.69", "2606:4700:4700::1111", "2001:4860:4860::8888"]


def _in(networks: list[V4] | list[V6]) -> st.SearchStrategy[IPAddress]:
    def addresses(net: V4 | V6) -> st.SearchStrategy[IPAddress]:
        first, last = int(net.network_address), int(net.broadcast_address)
        return st.integers(first, last).map(lambda n: ipaddress.ip_address(n) if net.version == 4 else V6((n, 128))[0])

    return st.sampled_from(networks).flatmap(addresses)


def _python_says_global(ip: IPAddress) -> bool:
    """The standard library's view, an oracle the guard must never be laxer than."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # Python < 3.13 calls every mapped address private
    return ip.is_global and not ip.is_multicast


# --- the policy -------------------------------------------------------------------------


@given(_in(REFUSED_V4) | _in(REFUSED_V6))
def test_every_address_of_the_refused_networks_is_refused(ip: IPAddress) -> None:
    assert is_forbidden(ip)
    assert not AddressPolicy().permits(ip)


@given(_in(REFUSED_V4))
def test_ipv6_forms_of_a_refused_ipv4_address_are_refused(ip: ipaddress.IPv4Address) -> None:
    n = int(ip)
    mapped = ipaddress.IPv6Address((0xFFFF << 32) | n)
    nat64 = ipaddress.IPv6Address((0x64FF9B << 96) | n)
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1)
    for form in (mapped, nat64, sixtofour):
        assert not AddressPolicy().permits(form), form


@given(st.ip_addresses())
def test_the_guard_is_never_laxer_than_the_standard_library(ip: IPAddress) -> None:
    if AddressPolicy().permits(ip):
        assert _python_says_global(ip), ip


@given(st.ip_addresses(v=4))
def test_public_ipv4_addresses_are_allowed(ip: ipaddress.IPv4Address) -> None:
    # 192.0.0.0/24 and 192.88.99.0/24 hold a few anycast services; the guard refuses them whole.
    special = ip in V4("192.0.0.0/24") or ip in V4("192.88.99.0/24")
    if _python_says_global(ip) and not special:
        assert AddressPolicy().permits(ip)
        assert AddressPolicy().permits(ipaddress.IPv6Address((0xFFFF << 32) | int(ip)))


@pytest.mark.parametrize("text", PUBLIC)
def test_well_known_public_addresses_are_allowed(text: str) -> None:
    assert AddressPolicy().permits(ipaddress.ip_address(text))


@pytest.mark.parametrize(
    ("allow", "address", "permitted"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "127.0.0.2", False),
        (["127.0.0.1"], "::ffff:127.0.0.1", True),  # the same loopback address, through IPv6
        (["10.0.0.0/8"], "10.255.0.7", True),
        (["10.0.0.0/8"], "192.168.1.1", False),
        (["10.0.0.5/8"], "10.1.2.3", True),  # host bits are ignored, as the config validates them
        (["fd00::/8"], "fd00::1", True),
        (["fd00::/8"], "10.0.0.1", False),
        ([], "169.254.169.254", False),
    ],
)
def test_allow_private_trusts_what_it_names_and_nothing_else(allow: list[str], address: str, permitted: bool) -> None:
    assert AddressPolicy.allowing(allow).permits(ipaddress.ip_address(address)) is permitted


# --- literal hosts, read as the socket layer reads them ------------------------------------


@given(st.integers(0, 2**32 - 1))
def test_every_numeric_spelling_of_an_ipv4_address_is_read_as_that_address(n: int) -> None:
    ip = ipaddress.IPv4Address(n)
    a, b, c, d = ip.packed
    spellings = [
        str(n),
        hex(n),
        "0" + oct(n)[2:],
        f"{a}.{b}.{c}.{d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{a:#x}.{b:#o}.{c}.{d:#X}".replace("0o", "0"),
        f"{a}.{b}.{c}.{d}.",  # a trailing dot, as browsers read it
    ]
    for spelling in spellings:
        assert literal_ipv4(spelling) == ip, spelling


@settings(max_examples=300)
@given(st.text(alphabet="0123456789xXoabcdefABCDEF._ +-", max_size=24))
def test_literal_ipv4_agrees_with_inet_aton(text: str) -> None:
    try:
        expected: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        expected = None
    got = literal_ipv4(text)
    if " " in text:
        # inet_aton ignores what follows a space; no URL host holds one, and were it asked, the
        # resolver's answer would be checked all the same.
        assert got is None
    elif text.endswith(".") and not text.endswith(".."):
        # The one place the guard reads more than inet_aton: it is then a literal, never a DNS name.
        assert got == (expected or literal_ipv4(text[:-1]))
    else:
        assert got == expected, text


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1"),
        ("fe80::1%25eth0", "fe80::1%eth0"),
    ],
)
def test_literal_hosts(host: str, address: str) -> None:
    assert str(literal_address(host)) == address


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "feeds.example.org",
        "256.0.0.1",
        "1.2.3.4.5",
        "0x",
        "08",
        "1..1",
        "",
        "1" * 5000,
        "[::1",
        "::g",
        "0x0x7f.1",  # int(..., 16) would read these
        "00o177.1",
        "1_27.0.0.1",
        " 127.0.0.1",
        "+127.0.0.1",
    ],
)
def test_names_and_malformed_numbers_are_not_literals(host: str) -> None:
    assert literal_address(host) is None


def test_resolving_a_literal_asks_no_resolver() -> None:
    # A name that is a number never reaches getaddrinfo: the answer is the number itself.
    assert asyncio.run(resolve("0x7f.1", 80)) == [ipaddress.IPv4Address("127.0.0.1")]


# --- the connection layer over loopback ---------------------------------------------------


class Answers:
    """A resolver whose answers the test scripts, one list per call (the last repeats)."""

    def __init__(self, *answers: list[str] | Exception, delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []
        self.delay = delay

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return [ipaddress.ip_address(a) for a in answer]


def _fetch(
    url: str, allow: tuple[str, ...], resolver: Answers | None = None, verify: ssl.SSLContext | bool = True
) -> SourceResult:
    fetch_settings = FetchSettings(allow_private=allow, deadline=5, connect_timeout=1)

    async def run() -> SourceResult:
        client = make_client(fetch_settings, resolver=resolver or resolve, verify=verify)
        async with client:
            [res] = await gather_async([Source("feed", SourceKind.FEED, url)], {}, fetch_settings, UTC, client=client)
        return res

    return asyncio.run(run())


def _port(server: FeedServer) -> str:
    return server.base.rsplit(":", 1)[1]


def test_localhost_is_refused_unless_trusted_and_keeps_its_name(feed_server: FeedServer) -> None:
    url = f"http://localhost:{_port(feed_server)}/feeds/rss2.xml"
    refused = _fetch(url, ())
    assert refused.status is FetchStatus.FAILED
    assert refused.error.startswith("refused: private address (")
    assert feed_server.connections == []

    allowed = _fetch(url, ("127.0.0.1", "::1"))
    assert allowed.status is FetchStatus.OK, allowed.error
    assert feed_server.connections == ["127.0.0.1"]
    assert feed_server.requests[0].headers["host"] == f"localhost:{_port(feed_server)}"


def test_a_rebinding_name_is_connected_to_the_address_that_was_checked(
    feed_server: FeedServer, private_server: FeedServer
) -> None:
    # First answer: the trusted 127.0.0.1; any later lookup would say 127.0.0.2. The name does not
    # exist in any real DNS, so the fetch can only work if the connection went to the checked number.
    dns = Answers(["127.0.0.1"], ["127.0.0.2"])
    res = _fetch(f"http://rebind.invalid:{_port(feed_server)}/feeds/rss2.xml", ("127.0.0.1",), dns)
    assert res.status is FetchStatus.OK, res.error
    assert dns.calls == ["rebind.invalid"]
    assert feed_server.connections == ["127.0.0.1"] and private_server.connections == []
    assert feed_server.requests[0].headers["host"] == f"rebind.invalid:{_port(feed_server)}"


def test_a_redirect_hop_to_a_name_that_now_resolves_privately_is_refused(
    feed_server: FeedServer, private_server: FeedServer
) -> None:
    # The hop goes to another port of the same name: a new connection, so a new lookup, a new check.
    dns = Answers(["127.0.0.1"], ["127.0.0.2"])
    hop = f"http://rebind.invalid:{_port(private_server)}/private/admin.xml"
    first = f"http://rebind.invalid:{_port(feed_server)}/redirect-to?url={quote(hop, safe='')}"
    res = _fetch(first, ("127.0.0.1",), dns)
    assert res.error == "refused: redirect to a private address (127.0.0.2)"
    assert dns.calls == ["rebind.invalid", "rebind.invalid"]
    assert private_server.connections == []


def test_only_the_permitted_answers_are_tried(feed_server: FeedServer) -> None:
    # 127.0.0.3 is trusted but nothing listens there; 10.0.0.1 is never tried at all.
    dns = Answers(["10.0.0.1", "127.0.0.3", "127.0.0.1"])
    res = _fetch(f"http://mixed.invalid:{_port(feed_server)}/feeds/rss2.xml", ("127.0.0.0/8",), dns)
    assert res.status is FetchStatus.OK, res.error
    assert feed_server.connections == ["127.0.0.1"]


def test_a_name_with_only_private_answers_is_refused_naming_the_first() -> None:
    dns = Answers(["10.0.0.7", "192.168.0.9"])
    res = _fetch("http://intranet.invalid/feed.xml", ("127.0.0.1",), dns)
    assert res.error == "refused: private address (10.0.0.7)"


def test_a_name_that_does_not_resolve_is_a_connect_error() -> None:
    dns = Answers(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    res = _fetch("http://nowhere.invalid/feed.xml", (), dns)
    assert res.error == "could not connect: cannot resolve nowhere.invalid: Name or service not known"


def test_a_slow_resolver_counts_against_the_connect_timeout() -> None:
    res = _fetch("http://slow.invalid/feed.xml", (), Answers(["8.8.8.8"], delay=3))
    assert res.error == "could not connect within 1s"


# --- TLS: SNI and the certificate check stay on the name ----------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for feeds.invalid, made by openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=feeds.invalid"
    command += " -addext subjectAltName=DNS:feeds.invalid"
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[FeedServer, list[str | None]]]:
    """The feed server over TLS on 127.0.0.1, and the SNI names its handshakes saw."""
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    with serve("127.0.0.1", tls=context) as server:
        yield server, names


def test_tls_to_the_pinned_address_checks_the_certificate_of_the_name(
    tls_server: tuple[FeedServer, list[str | None]], certificate: tuple[Path, Path]
) -> None:
    server, names = tls_server
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    dns = Answers(["127.0.0.1"])
    res = _fetch(f"https://feeds.invalid:{_port(server)}/feeds/rss2.xml", ("127.0.0.1",), dns, trust)
    assert res.status is FetchStatus.OK, res.error
    assert names == ["feeds.invalid"]
    assert server.requests[0].headers["host"] == f"feeds.invalid:{_port(server)}"

    # Another name at the same address: the certificate does not cover it, so the fetch fails.
    names.clear()
    other = _fetch(
        f"https://other.invalid:{_port(server)}/feeds/rss2.xml", ("127.0.0.1",), Answers(["127.0.0.1"]), trust
    )
    assert other.status is FetchStatus.FAILED
    assert "certificate verify failed" in other.error and "other.invalid" in other.error
    assert names == ["other.invalid"]
