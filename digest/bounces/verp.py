"""VERP: a return path per message, so a bounce names its issue and address without parsing.

``bounces@example.org`` becomes ``bounces+<tag>@example.org``; the tag is an
HMAC of the issue key and the address (hex: letters and digits only, which
every MTA keeps as it is), so it is the same on a resend and nobody can
forge one for an address of their choosing.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_TAG = re.compile(r"^[0-9a-f]{20}$")


def verp_tag(secret: str, issue_key: str, email: str) -> str:
    """The tag of one message: 20 hex digits."""
    mac = hmac.new(secret.encode(), f"verp\0{issue_key}\0{email.strip().lower()}".encode(), hashlib.sha256)
    return mac.hexdigest()[:20]


def verp_address(bounce_address: str, tag: str) -> str:
    """``bounces@example.org`` + tag → ``bounces+tag@example.org``."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{tag}@{domain}"


def tag_of(address: str, bounce_address: str) -> str | None:
    """The tag in ``address`` when it is a VERP form of ``bounce_address``; None otherwise."""
    local, _, domain = address.strip().lower().rpartition("@")
    base_local, _, base_domain = bounce_address.strip().lower().rpartition("@")
    if domain != base_domain or not local.startswith(base_local + "+"):
        return None
    tag = local[len(base_local) + 1 :]
    return tag if _TAG.match(tag) else None
