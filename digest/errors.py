"""The one exception tree of digest.

Every error that a user can cause (bad config, a broken feed, a refused
message) is a ``DigestError``. Third-party exceptions are translated into one
of these exactly once, at the I/O boundary where they happen, keeping the
original as ``__cause__``::

    DigestError
     ├── ConfigError          bad digest.toml, bad CLI usage       (exit 2)
     ├── InvalidURL           a URL that cannot be parsed (also a ValueError)
     ├── SubscriberError      a bad subscriber row or address
     ├── SourceError          one source failed; the others go on
     │    ├── FetchError      network, HTTP status, limits
     │    └── ParseError      bytes that are not a feed / listing
     ├── AddressRefused       the fetcher would connect to a private address
     ├── StoreError           the database refused or is locked
     ├── RenderError          template syntax / undefined variable
     ├── BounceError          the bounce mailbox cannot be read
     ├── TooFewEntries        an issue with too few entries to build
     │    └── IssueHeld       a thin week held back; it rolls into the next issue
     ├── AwaitingApproval     an issue frozen for an editor's `digest approve`; not sent yet
     └── SendError            SMTP refused or the connection broke
          ├── BusyError       another run holds the send lock
          └── ListShrunk      the list lost over half its people since the freeze

``cli.py`` prints ``str(err)`` on one line and exits with ``err.exit_code``.
"""

from __future__ import annotations


class DigestError(Exception):
    """Base of every error digest raises on purpose."""

    exit_code: int = 1


class ConfigError(DigestError):
    """The configuration or the command line is wrong; nothing was done."""

    exit_code = 2


class InvalidURL(DigestError, ValueError):
    """A URL that cannot be parsed or is not of the kind needed; raised only by ``digest.urls``."""


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


class AddressRefused(DigestError):
    """A fetch would connect to a private address that ``[fetch] allow_private`` does not trust.

    Raised below the HTTP client, where the source is not known;
    ``sources/http.py`` turns it into the source's ``FetchError``.
    ``address`` is the refused address as text.
    """

    def __init__(self, address: str) -> None:
        super().__init__(f"private address ({address})")
        self.address = address


class StoreError(DigestError):
    """The database failed or holds something unexpected."""


class BounceError(DigestError):
    """The bounce mailbox (Maildir or IMAP) cannot be read."""


class RenderError(DigestError):
    """A template could not be rendered (syntax error, undefined name)."""


class TooFewEntries(DigestError):
    """The issue has fewer entries than ``min_entries``: nothing is built or sent."""


class IssueHeld(TooFewEntries):
    """The issue is held back for having fewer than ``[issue] min_entries`` entries.

    Its entries are not lost: the next issue carries them, and at the latest
    ``max_hold_weeks`` after the oldest of them, whatever there is goes out.
    """


class AwaitingApproval(DigestError):
    """With ``[editorial] approval = "required"``: the issue is frozen but not approved (or its bytes changed since).

    ``since`` is when it started waiting. ``run`` reports it and exits 0;
    ``send`` refuses with it (the message says how to approve).
    """

    def __init__(self, message: str, *, issue_key: str, since: object) -> None:
        super().__init__(message)
        self.issue_key = issue_key
        self.since = since


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


class ListShrunk(SendError):
    """The subscriber list lost more than half of an issue's recipients since it was frozen.

    Most likely a list file cut short (a partial write); the send stops
    before skipping anyone, unless the change is accepted.
    """
