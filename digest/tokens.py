"""Signed unsubscribe and preferences tokens.

Unsubscribe tokens are deterministic authenticated encryption of the address
(an SIV construction from HMAC-SHA256, stdlib only)::

    k_mac = HMAC(secret, "digest/unsubscribe/mac")
    k_enc = HMAC(secret, "digest/unsubscribe/enc")
    siv   = HMAC(k_mac, list_id 0x00 email)[:16]        # tag and IV at once
    ct    = email XOR (HMAC(k_enc, siv ‖ 0) ‖ HMAC(k_enc, siv ‖ 1) ‖ …)
    token = base64url(0x01 ‖ siv ‖ ct), unpadded

The address is never in clear, the token is the same for the same secret,
address and list (so message bytes are reproducible), it never expires, and
verifying recomputes the SIV over the decrypted address and compares it in
constant time: any change to the token, the secret or the list fails.

Preferences tokens (``/p/<token>``) are built the same way under their own
key labels (``digest/preferences/mac`` and ``…/enc``), so neither kind of
token opens the other's page.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re

from digest.errors import ConfigError, SubscriberError

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{24,}")
_SIV_BYTES = 16
_TOKEN_VERSION = b"\x01"


UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"


def make_token(secret: str, email: str, list_id: str, purpose: str = UNSUBSCRIBE) -> str:
    """The ``purpose`` token (unsubscribe or preferences) for ``email`` on ``list_id`` (see the module docstring)."""
    k_mac, k_enc = _token_keys(secret, purpose)
    plain = email.encode("utf-8")
    siv = _siv(k_mac, list_id, plain)
    body = _TOKEN_VERSION + siv + _xor(plain, _keystream(k_enc, siv, len(plain)))
    return base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def verify_token(secret: str, token: str, list_id: str, purpose: str = UNSUBSCRIBE) -> str:
    """The address inside ``token``; ``SubscriberError`` if it was not made with this secret, list and purpose."""
    k_mac, k_enc = _token_keys(secret, purpose)
    if not _TOKEN_RE.fullmatch(token):
        raise SubscriberError("invalid unsubscribe link")
    try:
        body = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise SubscriberError("invalid unsubscribe link") from None
    version, siv, ct = body[:1], body[1 : 1 + _SIV_BYTES], body[1 + _SIV_BYTES :]
    if version != _TOKEN_VERSION or len(siv) != _SIV_BYTES or not ct:
        raise SubscriberError("invalid unsubscribe link")
    plain = _xor(ct, _keystream(k_enc, siv, len(ct)))
    if not hmac.compare_digest(siv, _siv(k_mac, list_id, plain)):
        raise SubscriberError("invalid unsubscribe link")
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:  # only reachable with a forged tag, i.e. never
        raise SubscriberError("invalid unsubscribe link") from None


def unsubscribe_url(base_url: str, token: str) -> str:
    """``{base_url}/u/{token}``."""
    return f"{base_url.rstrip('/')}/u/{token}"


def preferences_url(base_url: str, token: str) -> str:
    """``{base_url}/p/{token}``."""
    return f"{base_url.rstrip('/')}/p/{token}"


@functools.lru_cache(maxsize=16)
def _token_keys(secret: str, purpose: str = UNSUBSCRIBE) -> tuple[bytes, bytes]:
    # Cached: the keys depend on the secret only, and a send makes two tokens per subscriber.
    if not secret:
        raise ConfigError("digest.secret: no secret set for unsubscribe links (set DIGEST_SECRET)")
    if purpose not in (UNSUBSCRIBE, PREFERENCES):
        raise ValueError(f"unknown token purpose {purpose!r}")
    key, label = secret.encode("utf-8"), f"digest/{purpose}".encode("ascii")
    return (
        hmac.digest(key, label + b"/mac", hashlib.sha256),
        hmac.digest(key, label + b"/enc", hashlib.sha256),
    )


def _siv(k_mac: bytes, list_id: str, plain: bytes) -> bytes:
    return hmac.digest(k_mac, list_id.encode("utf-8") + b"\0" + plain, hashlib.sha256)[:_SIV_BYTES]


def _keystream(k_enc: bytes, siv: bytes, size: int) -> bytes:
    blocks = (hmac.digest(k_enc, siv + i.to_bytes(4, "big"), hashlib.sha256) for i in range((size + 31) // 32))
    return b"".join(blocks)[:size]


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")
