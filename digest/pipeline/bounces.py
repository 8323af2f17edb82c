"""Read the bounce mailbox the config names and act on what it says."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable

from digest.bounces import (
    BounceSettings,
    ImapBox,
    ImapSettings,
    Mailbox,
    MaildirBox,
    ScanResult,
    ScanSettings,
    scan,
    verp_address,
    verp_tag,
)
from digest.compose.headers import domain_of, message_id
from digest.config import Config
from digest.errors import ConfigError
from digest.netutil import is_loopback_host
from digest.pipeline.issue import secret
from digest.store import Store

#: Tags recorded per write.
_TAG_BATCH = 10_000


def return_paths(config: Config, store: Store, issue_key: str, emails: Iterable[str]) -> Callable[[str], str] | None:
    """The MAIL FROM of each message of ``issue_key``, or None for the sender's own address.

    With ``[bounces] verp``, each address gets ``bounces+<tag>@domain`` and its tag is
    recorded first (the same tag on a resend), so ``digest bounces scan`` can name it.
    """
    b = config.bounces
    if not b.address:
        return None
    if not b.verp:
        return lambda email: b.address
    key = secret(config, strict=True)
    # Recorded a slice at a time, and worked out again per message (an HMAC) rather than kept:
    # a million tags held through the send cost more memory than they save time.
    batch = iter(emails)
    while chunk := [(e, verp_tag(key, issue_key, e)) for e in itertools.islice(batch, _TAG_BATCH)]:
        store.record_verp_tags(issue_key, chunk)
    return lambda email: verp_address(b.address, verp_tag(key, issue_key, email))


def open_mailbox(config: Config) -> Mailbox | None:
    """The configured bounce mailbox, or None when there is none."""
    b = config.bounces
    if b.maildir is not None:
        return MaildirBox(b.maildir)
    if not b.imap_host:
        return None
    if b.imap_security == "none" and not is_loopback_host(b.imap_host):
        raise ConfigError(f"{config.path}: bounces.imap_security: 'none' sends the password in clear; only on loopback")
    if not b.imap_password:
        raise ConfigError(f"{config.path}: bounces.imap_user: set DIGEST_IMAP_PASSWORD to the mailbox password")
    return ImapBox(
        ImapSettings(
            host=b.imap_host,
            port=b.imap_port,
            security=b.imap_security,
            user=b.imap_user,
            password=b.imap_password,
            folder=b.imap_folder,
            processed=b.imap_processed,
        )
    )


def scan_bounces(config: Config, store: Store, now: dt.datetime, *, dry_run: bool = False) -> ScanResult | None:
    """Scan the bounce mailbox once; None when none is configured."""
    box = open_mailbox(config)
    if box is None:
        return None
    domain = domain_of(config.sender.from_)
    settings = ScanSettings(
        bounce_address=config.bounces.address,
        unsubscribe_address=config.sender.unsubscribe_mailto,
        scoring=BounceSettings(threshold=config.bounces.threshold, stale_after=config.bounces.stale_after),
    )
    try:
        return scan(box, store, settings, lambda key, email: message_id(key, email, domain), now, dry_run=dry_run)
    finally:
        box.close()
