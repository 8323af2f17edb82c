"""The send lease: the database lock that lets one run at a time send.

``SendLease`` takes the ``send`` lock (taking it over from a run of this
host that was killed), keeps it alive with a heartbeat thread of its own
(every ttl/3, whatever the send is doing: a final reply may take ten
minutes) and gives it up. A run that dies without releasing it blocks
others only until its ttl has passed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType

from digest.errors import BusyError, StoreError
from digest.store import Store

log = logging.getLogger(__name__)

SEND_LOCK = "send"
LOCK_TTL = dt.timedelta(minutes=10)


def _owner_is_gone(owner: str) -> bool:
    """True when the lock ``owner`` names a process of this host that is no longer running.

    An owner from another host, or one that cannot be checked, counts as alive:
    its lock then only lapses after ``LOCK_TTL``.
    """
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # e.g. EPERM: it runs under another user
    return False


class SendLease:
    """The ``send`` lock held for one run: ``with SendLease(store, clock, wait=...):``.

    Entering takes the lock (raising ``BusyError`` while another live run
    holds it, unless ``wait``) and starts the heartbeat; leaving stops it and
    releases the lock. ``lost`` is set if a refresh found the lock gone.
    """

    def __init__(
        self,
        store: Store,
        clock: Callable[[], dt.datetime],
        *,
        wait: bool = False,
        ttl: dt.timedelta = LOCK_TTL,
    ) -> None:
        self.store, self.clock, self.wait, self.ttl = store, clock, wait, ttl
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lost: StoreError | None = None
        self._done = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> SendLease:
        store, clock = self.store, self.clock
        while not store.acquire_lock(SEND_LOCK, self.owner, clock(), self.ttl):
            holder = store.lock_holder(SEND_LOCK, clock())
            if holder is not None and _owner_is_gone(holder):
                # A run killed on this host: its claims become 'unknown', its lock goes now.
                log.warning("send lock held by %s, which no longer runs; taking it over", holder)
                store.release_lock(SEND_LOCK, holder)
                continue
            if not self.wait:
                raise BusyError("another digest run is sending right now; try again later or pass --wait")
            time.sleep(1.0)
        self._beat = threading.Thread(target=self._heartbeat, name="send-lease", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        every = self.ttl.total_seconds() / 3
        while not self._done.wait(every):
            try:
                self.refresh()
            except StoreError as exc:
                # Expired and taken, or the database is away: say so once, at the end of the send.
                log.error("send lock: %s", exc)
                self.lost = exc
                return

    def refresh(self) -> None:
        """Push the lock's expiry out by its ttl."""
        self.store.refresh_lock(SEND_LOCK, self.owner, self.clock())

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # Stop the heartbeat before the lock goes: left running, it would wake a ttl/3 later, find
        # the lock released (or another run's) and log an error about a send long finished.
        self._done.set()
        if self._beat is not None:
            self._beat.join()
        self.store.release_lock(SEND_LOCK, self.owner)
