"""The one loopback check: whether a host name or address is this machine.

The web servers (which addresses may see the preview, which ``Host`` headers
are trusted) and the sender (where a plaintext login is allowed) ask the same
question; it is answered here without a DNS lookup, since a name other than
``localhost`` may resolve to anything.
"""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is ``localhost``, in 127.0.0.0/8 or ``::1`` (also ``[::1]``, ``::ffff:127.0.0.1``).

    Case and one trailing dot of a name are ignored; no port may be attached.
    """
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.lower()
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
