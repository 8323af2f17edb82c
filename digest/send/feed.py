"""What the SMTP workers share: the messages they take as they are free, and each one's pending marks."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from digest.models import Outgoing


class Feed:
    """The messages, handed to the workers as they ask: one at a time, or a batch of one issue.

    Workers pull rather than a feeding thread pushing through a queue: no
    queue hand-offs per message, and no worker sits on a batch while another
    has nothing left to send (with many connections, the tail of a send stays
    as parallel as its start). An error of the message source reaches the
    worker that asked.
    """

    def __init__(self, messages: Iterable[Outgoing]) -> None:
        self._it = iter(messages)
        self._lock = threading.Lock()
        self._held: Outgoing | None = None  # the first message of the next issue, taken too early

    def take(self, size: int) -> list[Outgoing]:
        """Up to ``size`` messages of one issue; empty when none are left."""
        out: list[Outgoing] = []
        with self._lock:
            while len(out) < size:
                msg, self._held = self._held, None
                if msg is None:
                    msg = next(self._it, None)
                if msg is None:
                    break
                if out and msg.issue_key != out[0].issue_key:
                    self._held = msg
                    break
                out.append(msg)
        return out


class Marks:
    """One worker's messages accepted by the server and not yet recorded ``sent``.

    They ride with the worker's next claim (``claim_next``), so a connection
    holds at most one row in doubt; ``flush`` records them on their own, at
    the end, before the worker waits, or when the next message is of
    another issue.
    """

    __slots__ = ("emails", "issue_key")

    def __init__(self) -> None:
        self.issue_key = ""
        self.emails: list[str] = []
