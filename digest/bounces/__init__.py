"""Bounces, complaints and mailto unsubscribes, read from the bounce mailbox.

``report`` parses one message (DSN, ARF, Exim, Exchange-style, auto-reply);
``classify`` says what a failure means and scores an address's bounces;
``verp`` makes and reads per-message return paths; ``mailbox`` reads a
Maildir or an IMAP folder; ``scan`` ties them to the store. Nothing here
sends mail.
"""

from __future__ import annotations

from digest.bounces.classify import BounceSettings, Verdict, classify, score
from digest.bounces.mailbox import ImapBox, ImapSettings, Mailbox, MaildirBox
from digest.bounces.report import Failure, Kind, Report, read_report
from digest.bounces.scan import ScanResult, ScanSettings, scan
from digest.bounces.verp import tag_of, verp_address, verp_tag

__all__ = [
    "BounceSettings",
    "Failure",
    "ImapBox",
    "ImapSettings",
    "Kind",
    "Mailbox",
    "MaildirBox",
    "Report",
    "ScanResult",
    "ScanSettings",
    "Verdict",
    "classify",
    "read_report",
    "scan",
    "score",
    "tag_of",
    "verp_address",
    "verp_tag",
]
