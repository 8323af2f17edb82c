"""The one exception tree of digest.

Every error that a user can cause (bad config, a broken feed, a refused
message) is a ``DigestError``. Third-party exceptions are translated into one
of these exactly once, at the I/O boundary where they happen, keeping the
original as ``__cause__``::

    DigestError
     ├── ConfigError          bad digest.toml, bad CLI usage       (exit 2)
     ├── SubscriberError      a bad subscriber row or address
     ├── SourceError          one source failed; the others go on
     │    ├── FetchError      network, HTTP status, limits
     │    └── ParseError      bytes that are not a feed / listing
     ├── StoreError           the database refused or is locked
     ├── RenderError          template syntax / undefined variable
     ├── TooFewEntries        an issue with too few entries to build
     │    └── IssueHeld       a thin week held back; it rolls into the next issue
     └── SendError            SMTP refused or the connection broke
          └── BusyError       another run holds the send lock

``cli.py`` prints ``str(err)`` on one line and exits with ``err.exit_code``.
"""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error digest raises on purpose."""

    exit_code: int = 1


class ConfigError(DigestError):
    """The configuration or the command line is wrong; nothing was done."""

    exit_code = 2


class SubscriberError(DigestError):
    """A subscriber address or list row is invalid."""


class SourceError(DigestError):
    """One source could not be gathered.

    ``source`` names the source, ``reason`` says what went wrong, in words a
    user can act on.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type[SourceError], tuple[str, str]]:
        # Rebuilt from (source, reason), not from the formatted message: parsing may run in a worker process.
        return (type(self), (self.source, self.reason))


class FetchError(SourceError):
    """The bytes of a source could not be fetched (network, status, limits)."""


class ParseError(SourceError):
    """The bytes were fetched but are not a usable feed or listing."""


class StoreError(DigestError):
    """The database failed or holds something unexpected."""


class RenderError(DigestError):
    """A template could not be rendered (syntax error, undefined name)."""


class TooFewEntries(DigestError):
    """The issue has fewer entries than ``min_entries``: nothing is built or sent."""


class IssueHeld(TooFewEntries):
    """The issue is held back for having fewer than ``[issue] min_entries`` entries.

    Its entries are not lost: the next issue carries them, and at the latest
    ``max_hold_weeks`` after the oldest of them, whatever there is goes out.
    """


class SendError(DigestError):
    """A message could not be handed to the mail system.

    ``code`` is the SMTP reply code when there was one; ``permanent`` says
    whether trying again later can help.
    """

    def __init__(self, message: str, *, code: int | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.permanent = permanent


class BusyError(SendError):
    """Another run is sending right now."""
