"""The send stage: hand finished messages to the mail system, once each.

``Sender`` is the protocol the pipeline calls; ``SmtpSender`` delivers over
a pool of SMTP connections and ``MaildirSender`` writes files to a Maildir
(demo, dry runs). Both keep the delivery ``Ledger`` up to date message by
message, so a killed run neither loses nor repeats a delivery.
``make_sender`` picks one from ``[sender]`` settings. ``smtp`` runs the
pool's workers, ``feed`` what they share, ``session`` one connection's
dialogue and ``replies`` what a refusal means.

    >>> sender = make_sender(config.sender)
    >>> report = sender.send(outgoing, store, clock=lambda: now)
"""

from __future__ import annotations

from email.utils import parseaddr

from digest.config import SenderSettings
from digest.errors import ConfigError
from digest.netutil import is_loopback_host
from digest.send.base import Ledger, MemoryLedger, Problem, SendAborted, Sender, SendEvent, SendReport, TokenBucket
from digest.send.maildir import MaildirSender
from digest.send.smtp import SmtpSender

__all__ = [
    "Ledger",
    "MaildirSender",
    "MemoryLedger",
    "Problem",
    "SendAborted",
    "SendEvent",
    "SendReport",
    "Sender",
    "SmtpSender",
    "TokenBucket",
    "make_sender",
]


def make_sender(settings: SenderSettings) -> Sender:
    """The sender for ``settings.transport``: ``"smtp"`` or ``"maildir"``.

    Raises ``ConfigError`` for a bad transport or ``from``, and for a login
    (``username`` set) over ``security = "none"`` to a host that is not loopback.
    """
    if settings.transport == "maildir":
        return MaildirSender(settings.maildir)
    if settings.transport == "smtp":
        address = parseaddr(settings.from_)[1]
        if "@" not in address:
            raise ConfigError(f"sender.from: no address in {settings.from_!r}")
        if settings.username and settings.security == "none" and not is_loopback_host(settings.host):
            raise ConfigError(
                f"sender.security: 'none' would send the password of {settings.username!r} in clear"
                f" to {settings.host}; use 'starttls' or 'tls' (a plaintext login is allowed only"
                " to a loopback host)"
            )
        # One claim per message (claim_ahead off): a crash then leaves at most one row per
        # connection 'unknown', never a batch of rows that were claimed but not yet tried.
        return SmtpSender(settings, address)
    raise ConfigError(f"sender.transport: must be 'smtp' or 'maildir', got {settings.transport!r}")
