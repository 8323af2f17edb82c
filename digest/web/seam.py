"""The seam between the web app and the rest of digest.

The web app never imports a pipeline stage. Whoever serves it (the CLI's
``preview`` and ``serve`` commands) hands it a ``Backend`` that builds
previews, verifies tokens and records unsubscriptions; the app only turns
these plain values into HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PreviewVariant:
    """One rendered variant of an issue, exactly as subscribers would get it.

    ``key`` is safe in a URL path segment (e.g. ``"all"``); ``label`` is for
    people (``"All themes"``, ``"AI, Cybersecurity"``); ``html`` is the
    inlined HTML, ``text`` the plaintext part and ``eml`` the whole message.
    """

    key: str
    label: str
    subject: str
    html: str
    text: str
    eml: bytes


@dataclass(frozen=True, slots=True)
class PreviewSubscriber:
    """A subscriber and the key of the variant they get (``None``: no message)."""

    email: str
    name: str
    variant: str | None


@dataclass(frozen=True, slots=True)
class Preview:
    """Everything the preview page shows for one issue.

    ``weeks`` are the weeks one can switch to, newest first. ``error`` is a
    one-line build error (a template syntax error, say); when set, the page
    shows it instead of the message. ``title`` is the digest's title as
    configured when the preview was built (it follows edits to the config);
    empty means the title the app was created with.
    """

    issue_key: str
    weeks: tuple[str, ...]
    variants: tuple[PreviewVariant, ...]
    subscribers: tuple[PreviewSubscriber, ...]
    warnings: tuple[str, ...] = ()
    error: str | None = None
    title: str = ""

    def variant(self, key: str) -> PreviewVariant | None:
        """The variant called ``key``, or ``None``."""
        return next((v for v in self.variants if v.key == key), None)


class Backend(Protocol):
    """What the web app needs from the rest of digest.

    Methods are called from worker threads, possibly concurrently.
    """

    def preview(self, week: str | None) -> Preview:
        """The issue of ``week`` (``"2018-W02"``), or the next issue for ``None``."""
        ...

    def fingerprint(self) -> str:
        """A value that changes whenever a template, the config or a subscriber list changes."""
        ...

    def unsubscribe(self, token: str, how: str) -> str:
        """Unsubscribe the owner of ``token`` and return their address.

        ``how`` is ``"one-click"`` (RFC 8058) or ``"form"``. Idempotent.
        Raises ``SubscriberError`` for a bad or tampered token.
        """
        ...

    def check_token(self, token: str) -> str:
        """The address ``token`` belongs to, changing nothing; ``SubscriberError`` if bad."""
        ...

    def web_version(self, issue_key: str, variant: str) -> str | None:
        """The stored HTML of a sent issue's variant, or ``None`` if unknown."""
        ...
