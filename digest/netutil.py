"""The one loopback check: is a host name or address this machine, without a DNS lookup.

Used wherever a decision depends on traffic staying on the machine: the
preview's listen address, a plaintext SMTP login, and the https rule for
sending to a relay.
"""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost``, in 127.0.0.0/8, ``::1`` or an IPv4-mapped loopback address.

    Brackets (``[::1]``), a trailing dot and case are ignored. Any other
    name counts as not loopback: it may resolve to anything.
    """
    name = host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
