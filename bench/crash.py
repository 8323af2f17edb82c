"""Exactly-once under the benchmark's own load: SIGKILL a fast send, then send again.

``kill_and_resend`` starts the same measured send as ``digest send N`` (a
child ``python -m bench.send digest``), kills it with SIGKILL once the sink
has taken about a third of the messages, counts the rows the dead process
left claimed (each one in doubt: the server may or may not have its
message), then runs the send again to completion. It reports:

* ``in_doubt``: rows left claimed; the ledger's promise is at most one per
  connection (the claim of the message in flight);
* ``repeats``: messages the sink got for a recipient who already had one
  (must be 0: the re-run leaves the rows in doubt alone);
* ``missing``: recipients that never got a message although their row is
  not in doubt (must be 0).

The crash tests (``tests/test_send_crash.py``) prove the same at every
point of a transaction; this says the faster path keeps it at full speed.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import send


def kill_and_resend(folder: Path, template: Path, n: int, connections: int) -> dict[str, Any]:
    with send.Sink() as sink:
        send.prepared(folder, template, n, sink.port, connections)
        cmd = [send.PYTHON, "-m", "bench.send", "digest", str(folder)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while sink.count() < n // 3:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("crash bench: the send ended before it could be killed")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = sink.count()
        db = sqlite3.connect(folder / "digest.db")
        try:
            in_doubt = db.execute("SELECT count(*) FROM deliveries WHERE state = 'claimed'").fetchone()[0]
        finally:
            db.close()
        again = send.run_child("digest", folder)
        total, repeats = sink.count(), sink.repeats()
    missing = n - in_doubt - (total - repeats)
    return {
        "killed_after": first,
        "in_doubt": in_doubt,
        "repeats": repeats,
        "missing": max(0, missing),
        "resent": again["sent"],
        "connections": connections,
    }
