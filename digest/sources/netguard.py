"""The private-address guard: which addresses the fetcher may connect to, and the
connection layer that connects only to an address it has just checked.

A feed on the public internet must not be able to make the fetcher read the
editor's private network (a router page, a cloud metadata service at
169.254.169.254, an admin port on loopback) and mail what it finds to every
subscriber. So every TCP connection of the fetcher goes through
``GuardedBackend.connect_tcp``, which

1. turns the host into addresses: a literal IP in any form the socket layer
   accepts (``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1``,
   ``[::ffff:127.0.0.1]``) is read here, without the resolver; a name is
   resolved once with ``loop.getaddrinfo``;
2. keeps the addresses ``AddressPolicy.permits`` and raises
   ``AddressRefused`` naming the first address when none is left;
3. connects to a kept address itself, by number, so no second lookup can
   answer differently (DNS rebinding). The URL is untouched: the Host header,
   TLS SNI and the certificate check still use the name.

Refused, unless ``[fetch] allow_private`` lists them: the IPv4 networks of
``FORBIDDEN_V4``; in IPv6, everything outside global unicast 2000::/3 (which
takes in ``::``, ``::1``, ULA fc00::/7, link-local fe80::/10, site-local,
multicast ff00::/8, the IPv4-compatible ::/96 and NAT64 local-use), the
networks of ``FORBIDDEN_V6``, and the IPv4-mapped (::ffff:0:0/96), NAT64
(64:ff9b::/96) and 6to4 (2002::/16) forms of a refused IPv4 address.

The guard sits under httpx as an httpcore network backend, so it sees every
connection, the first request's and every redirect hop's alike; keep-alive
reuses a connection only for the origin it was checked for. Environment
proxies are not used (a proxy would make the connection for us, to an
address we never saw).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote

import httpcore
import httpx

from digest.errors import AddressRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``resolve``'s shape: (host, port) → addresses, ``socket.gaierror`` when there are none.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

#: IPv4 networks no public feed may lead to (IANA special-purpose registry).
FORBIDDEN_V4: tuple[ipaddress.IPv4Network, ...] = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 is the unspecified address (Linux connects it to loopback)
        "10.0.0.0/8",  # RFC 1918 private
        "100.64.0.0/10",  # carrier-grade NAT, shared address space
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata services (169.254.169.254)
        "172.16.0.0/12",  # RFC 1918 private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # RFC 1918 private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address 255.255.255.255
    )
)
#: IPv6 networks refused inside global unicast; outside 2000::/3 everything is refused.
FORBIDDEN_V6: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "2001::/23",  # IETF protocol assignments, Teredo (2001::/32) among them
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
    )
)
GLOBAL_V6 = ipaddress.IPv6Network("2000::/3")
MAPPED_V6 = ipaddress.IPv6Network("::ffff:0:0/96")
NAT64_V6 = ipaddress.IPv6Network("64:ff9b::/96")
SIXTOFOUR_V6 = ipaddress.IPv6Network("2002::/16")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches in the end (mapped, NAT64, 6to4), if any."""
    if ip in MAPPED_V6 or ip in NAT64_V6:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    if ip in SIXTOFOUR_V6:
        return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFF_FFFF)
    return None


def shown(ip: IPAddress) -> str:
    """``ip`` as a report shows it: an IPv4-mapped address keeps its dotted IPv4 tail."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"::ffff:{ip.ipv4_mapped}"
    return str(ip)


def is_forbidden(ip: IPAddress) -> bool:
    """Whether ``ip`` is loopback, private, link-local, unspecified, multicast or reserved."""
    if isinstance(ip, ipaddress.IPv4Address):
        return any(ip in net for net in FORBIDDEN_V4)
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_forbidden(inner)
    return ip not in GLOBAL_V6 or any(ip in net for net in FORBIDDEN_V6)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses the fetcher may connect to: the public ones, and ``trusted``.

    ``trusted`` holds the networks of ``[fetch] allow_private``; an IPv6
    form that reaches a trusted IPv4 address (``::ffff:127.0.0.1``) is
    trusted too.
    """

    trusted: tuple[IPNetwork, ...] = ()

    @classmethod
    def allowing(cls, allow_private: Iterable[str]) -> AddressPolicy:
        """The policy for ``[fetch] allow_private`` (addresses or CIDRs, already validated)."""
        return cls(tuple(ipaddress.ip_network(net, strict=False) for net in allow_private))

    def permits(self, ip: IPAddress) -> bool:
        if not is_forbidden(ip):
            return True
        inner = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in net or (inner is not None and inner in net) for net in self.trusted)


_DIGITS = {16: frozenset("0123456789abcdefABCDEF"), 10: frozenset("0123456789"), 8: frozenset("01234567")}


def _ipv4_part(part: str) -> int | None:
    """One part of an inet_aton address: 0x hex, 0 octal, else decimal."""
    if part[:2].lower() == "0x":
        digits, base = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    # Checked here, not left to int(), which would also take "0x0x1", "0o7", "1_0" or " 1".
    if not digits or any(c not in _DIGITS[base] for c in digits):
        return None
    try:
        return int(digits, base)
    except ValueError:  # more digits than int() will read in base 10
        return None


def literal_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` read as inet_aton(3) reads it (``127.1``, ``0x7f.1``, ``2130706433``), or None.

    One trailing dot is dropped, as browsers do (``127.0.0.1.``).
    """
    if host.endswith("."):
        host = host[:-1]
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_ipv4_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    *head, last = [v for v in values if v is not None]
    # The last part fills every byte the others left: "127.1" is 127.0.0.1, one number is all four.
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` (a URL's host, brackets or not) spells literally, or None for a name."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(unquote(host))  # a zone id arrives as %25eth0
        except ValueError:
            return None
    return literal_ipv4(host)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` stands for, in the resolver's order of preference.

    A literal IP is read here; a name is looked up once (``socket.gaierror``
    when it does not resolve).
    """
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]))
        if ip not in found:
            found.append(ip)
    return found


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address check in front of every TCP connection.

    ``resolver`` turns a host into addresses (``resolve``; a test gives one
    that answers differently on a second call, as a rebinding DNS server would).
    """

    def __init__(self, policy: AddressPolicy, resolver: Resolver = resolve) -> None:
        self.policy = policy
        self.resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            addresses = await asyncio.wait_for(self.resolver(host, port), timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {timeout:g}s") from exc
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from exc
        permitted = [ip for ip in addresses if self.policy.permits(ip)]
        if not permitted:
            raise AddressRefused(shown(addresses[0]) if addresses else host)
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for ip in permitted:
            left = None if deadline is None else max(deadline - loop.time(), 0.0)
            try:
                # By number: connecting must not look the name up again.
                return await self._inner.connect_tcp(
                    str(ip), port, timeout=left, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # permitted is not empty, so one attempt failed
        raise error

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport whose connection pool connects through a ``GuardedBackend``.

    ``verify`` is httpx's (an ``ssl.SSLContext`` lets a test trust its own CA);
    ``resolver`` is ``GuardedBackend``'s.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        limits: httpx.Limits,
        verify: ssl.SSLContext | bool = True,
        resolver: Resolver = resolve,
    ) -> None:
        super().__init__(limits=limits)
        # httpx builds its pool without a seam for the network backend; build the same pool with one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy, resolver),
        )
