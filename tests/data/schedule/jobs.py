"""Job functions for the scheduler tests: they leave a trace in a file instead of sending mail."""

from __future__ import annotations

import time
from pathlib import Path


def append_line(path: str, text: str = "ran") -> None:
    """Append ``text`` and a newline to ``path``."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(text + "\n")


def slow_run(path: str, seconds: float) -> None:
    """Write ``start``, sleep ``seconds``, write ``end``: a run a shutdown must wait for."""
    append_line(path, "start")
    time.sleep(seconds)
    append_line(path, "end")
