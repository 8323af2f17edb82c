"""The ``digest`` command line (click).

Every command loads the config once, calls ``pipeline`` and prints a report.
A ``DigestError`` becomes one line on stderr and exit code 1 (2 for bad
usage or config), never a traceback.
"""

from __future__ import annotations

from digest.cli import (  # noqa: F401  (they register their commands)
    bounces,
    editorial,
    gather,
    issue,
    operate,
    people,
    privacy,
    serving,
    sources,
    workers,
)
from digest.cli.base import cli


def main() -> None:
    cli()


__all__ = ["cli", "main"]
