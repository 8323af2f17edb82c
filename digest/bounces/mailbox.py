"""Where bounce mail is read from: a Maildir the MTA delivers to, or an IMAP folder.

Mail is never deleted: a processed Maildir message moves from ``new/`` to
``cur/`` (flagged seen), a processed IMAP message moves to another folder.
A dry run reads and moves nothing.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from digest.bounces.report import MAX_BYTES
from digest.errors import BounceError


class Mailbox(Protocol):
    """New messages, and a way to set each aside once it is read."""

    def messages(self) -> Iterator[tuple[str, bytes]]: ...

    def done(self, key: str) -> None: ...

    def close(self) -> None: ...


class MaildirBox:
    """``new/`` of a Maildir; processed messages go to ``cur/``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not (path / "new").is_dir():
            raise BounceError(f"bounces.maildir: {path} is not a Maildir (no new/ folder)")

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for entry in sorted((self.path / "new").iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            with entry.open("rb") as f:
                yield entry.name, f.read(MAX_BYTES)

    def done(self, key: str) -> None:
        (self.path / "cur").mkdir(exist_ok=True)
        name = key if ":2," in key else key + ":2,S"
        os.replace(self.path / "new" / key, self.path / "cur" / name)

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class ImapSettings:
    host: str
    user: str
    password: str
    folder: str = "INBOX"
    processed: str = "digest-processed"
    port: int = 993
    security: str = "tls"  # "tls" | "starttls" | "none" (loopback only)
    timeout: float = 30.0


class ImapBox:
    """Unseen and seen messages of one IMAP folder; processed ones move to ``processed``."""

    def __init__(self, settings: ImapSettings) -> None:
        self.settings = settings
        s = settings
        try:
            if s.security == "tls":
                self.conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(s.host, s.port, timeout=s.timeout)
            else:
                self.conn = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
                if s.security == "starttls":
                    self.conn.starttls()
            self.conn.login(s.user, s.password)
            self._ok(self.conn.select(_quote(s.folder)), f"select {s.folder}")
            self.conn.create(_quote(s.processed))  # fails harmlessly when it exists
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BounceError(f"bounces.imap_host: {s.host}:{s.port}: {exc}") from exc

    @staticmethod
    def _ok(reply: tuple[str, list[bytes | None]] | tuple[str, list[object]], what: str) -> list[object]:
        status, data = reply
        if status != "OK":
            raise BounceError(f"IMAP {what} failed: {data!r}")
        return list(data)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        try:
            data = self._ok(self.conn.uid("SEARCH", "ALL"), "search")
            uids = (data[0] or b"").decode().split() if isinstance(data[0], bytes) else []
            for uid in uids:
                fetched = self._ok(self.conn.uid("FETCH", uid, "(BODY.PEEK[])"), "fetch")
                for item in fetched:
                    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                        yield uid, item[1][:MAX_BYTES]
                        break
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BounceError(f"bounces.imap_host: {exc}") from exc

    def done(self, key: str) -> None:
        try:
            moved = self.conn.uid("MOVE", key, _quote(self.settings.processed))
            if moved[0] != "OK":  # no MOVE extension: copy, then flag and expunge the original
                self._ok(self.conn.uid("COPY", key, _quote(self.settings.processed)), "copy")
                self._ok(self.conn.uid("STORE", key, "+FLAGS", r"(\Deleted)"), "store")
                self.conn.expunge()
        except (OSError, imaplib.IMAP4.error) as exc:
            raise BounceError(f"bounces.imap_host: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            self.conn.logout()


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
