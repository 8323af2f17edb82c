"""Maildir delivery: each message becomes a file in ``folder/new``.

Used by the demo and by ``--dry-run``: the same ledger steps as SMTP
(claim, write, mark sent), with files instead of a server. Files are
written to ``tmp/`` and renamed into ``new/`` (stdlib ``mailbox``), with
LF line ends as mail readers expect on disk.
"""

from __future__ import annotations

import mailbox
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from digest.models import Delivery, Outgoing
from digest.send.base import Ledger, SendAborted, SendEvent, SendReport, Tally


class MaildirSender:
    """Writes each message into the Maildir at ``folder`` (created if missing)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def send(
        self,
        messages: Iterable[Outgoing],
        ledger: Ledger,
        *,
        clock: Callable[[], datetime],
        should_send: Callable[[Outgoing], bool] | None = None,
        progress: Callable[[SendEvent], None] | None = None,
        interrupt: threading.Event | None = None,
    ) -> SendReport:
        """Write every message once; a disk error stops the run with ``SendAborted``."""
        tally = Tally(progress)
        try:
            box = mailbox.Maildir(self.folder, factory=None, create=True)
        except OSError as exc:
            raise SendAborted(f"cannot open Maildir {self.folder}: {exc}", tally.report()) from exc
        for msg in messages:
            if interrupt is not None and interrupt.is_set():
                break
            if should_send is not None and not should_send(msg):
                tally.add(Delivery.SKIPPED, msg.recipient)
                continue
            if not ledger.claim(msg.issue_key, msg.recipient, clock()):
                tally.add(Delivery.SKIPPED, msg.recipient)
                continue
            try:
                box.add(msg.data.replace(b"\r\n", b"\n"))
            except OSError as exc:
                error = f"cannot write to Maildir {self.folder}: {exc}"
                ledger.mark_failed(
                    msg.issue_key,
                    msg.recipient,
                    clock(),
                    permanent=False,
                    code=None,
                    error=error,
                    next_attempt=clock(),
                )
                tally.add(Delivery.FAILED_TEMPORARY, msg.recipient, None, error, 1)
                raise SendAborted(error, tally.report()) from exc
            ledger.mark_sent(msg.issue_key, msg.recipient, clock())
            tally.add(Delivery.SENT, msg.recipient, attempts=1)
        return tally.report()
