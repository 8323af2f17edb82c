"""Test sends: the message a subscriber would get, to a few test addresses, outside the ledger.

``send_test`` takes the issue as a send would send it (the frozen one, or
one built now without freezing it: ``dryrun.as_it_would_go``), the
variant of the subscriber named by ``--as`` (default: the all-themes one)
and composes it through the same ``MessageTemplate``, addressed to each
test address, with:

- the subject prefixed ``[TEST] `` and a header ``X-Digest-Test: 1``;
- its own Message-ID (``<2018-W02-test-<random>.…>``): never the one a
  subscriber's copy has, so no mail program takes the real issue for a
  copy of the test;
- unsubscribe and preferences links to ``/u/test``, a page that says it was
  a test: the links of a test unsubscribe nobody.

The configured sender sends them with a throwaway ledger in memory, so the
send ledger never hears of a test. ``approval`` uses it to mail the editors
(with a note on top saying where to look and how to approve).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from digest.compose import MessageTemplate, Recipient
from digest.config import Config
from digest.errors import ConfigError, SubscriberError
from digest.models import IsoWeek, Outgoing, Rendered
from digest.pipeline.dryrun import as_it_would_go
from digest.pipeline.issue import Built, compose_settings
from digest.placeholders import TEST_LINK
from digest.render import variant_key
from digest.send import MemoryLedger, Sender, SendReport, make_sender
from digest.store import Store
from digest.subscribers import normalise_email

#: At most this many addresses per test send: a test, not a mailing.
MAX_TEST_ADDRESSES = 10
SUBJECT_PREFIX = "[TEST] "
TEST_HEADER = b"X-Digest-Test: 1\r\n"


@dataclass(frozen=True, slots=True)
class SentTest:
    """What ``send_test`` sent: the issue and variant, the subject, to whom, whether the issue is frozen."""

    issue_key: str
    variant: str
    subject: str
    addresses: tuple[str, ...]
    frozen: bool
    report: SendReport


def parse_addresses(raw: str) -> tuple[str, ...]:
    """``"a@x.org, b@y.org"`` → the validated addresses (repeats dropped); ``ConfigError`` otherwise."""
    out: list[str] = []
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            address = normalise_email(part)
        except SubscriberError as exc:
            raise ConfigError(f"--test: {exc}") from None
        if address.lower() not in {a.lower() for a in out}:
            out.append(address)
    if not out:
        raise ConfigError("--test: give one or more addresses, separated by commas")
    if len(out) > MAX_TEST_ADDRESSES:
        raise ConfigError(f"--test: at most {MAX_TEST_ADDRESSES} addresses, got {len(out)}")
    return tuple(out)


def as_test(rendered: Rendered, note: tuple[str, str] | None = None) -> Rendered:
    """``rendered`` as a test: ``[TEST] `` subject, an issue key of its own (so its own Message-ID).

    ``note``: ``(text, html)`` put on top of the bodies (the editors' message says where to look).
    """
    nonce = secrets.token_hex(6)
    text, html = rendered.text, rendered.html
    if note is not None:
        text = note[0] + "\n\n" + text
        # After the <body ...> tag when there is one, else in front.
        m = re.search(r"<body\b[^>]*>", html, re.IGNORECASE)
        at = m.end() if m else 0
        html = html[:at] + note[1] + html[at:]
    return dataclasses.replace(
        rendered,
        issue_key=f"{rendered.issue_key}-test-{nonce}",
        subject=SUBJECT_PREFIX + rendered.subject,
        text=text,
        html=html,
    )


def pick_variant(built: Built, as_email: str | None) -> tuple[str, str]:
    """``(variant, name)`` of the subscriber ``as_email`` (default: the all-themes variant, no name)."""
    if as_email is None:
        return variant_key(None, built.issue.themes), ""
    wanted = as_email.strip().lower()
    for sub, variant in built.audience.assignments:
        if sub.email.lower() == wanted:
            if variant is None:
                raise ConfigError(f"--as: {sub.email} gets no part of issue {built.issue.key} (no theme of theirs)")
            return variant, sub.name
    raise ConfigError(f"--as: {as_email!r} is not an active subscriber on the lists")


def compose_tests(
    config: Config, built: Built, variant: str, name: str, addresses: Sequence[str], note: tuple[str, str] | None
) -> tuple[Rendered, list[Outgoing]]:
    """The test messages of ``variant`` of ``built``, one per address."""
    rendered = built.variants.get(variant)
    if rendered is None:
        raise ConfigError(f"issue {built.issue.key} has no variant {variant!r}")
    test = as_test(rendered, note)
    template = MessageTemplate.build(test, compose_settings(config, built.date))
    link = config.digest.base_url.rstrip("/") + TEST_LINK
    msgs = []
    for address in addresses:
        out = template.personalise(Recipient(address, name, link, link))
        # Prepended, outside any DKIM signature's list of headers: the signed bytes stay as composed.
        msgs.append(dataclasses.replace(out, data=TEST_HEADER + out.data))
    return test, msgs


def send_test(
    config: Config,
    store: Store,
    weeks: Sequence[IsoWeek],
    addresses: Sequence[str],
    *,
    clock: Callable[[], dt.datetime],
    as_email: str | None = None,
    built: Built | None = None,
    note: tuple[str, str] | None = None,
    sender: Sender | None = None,
) -> SentTest:
    """Send the test of the issue of ``weeks`` (or of ``built``) to ``addresses``; the ledger is not touched."""
    if len(addresses) > MAX_TEST_ADDRESSES:
        raise ConfigError(f"--test: at most {MAX_TEST_ADDRESSES} addresses, got {len(addresses)}")
    frozen = True
    if built is None:
        built, frozen = as_it_would_go(config, store, weeks, clock())
    variant, name = pick_variant(built, as_email)
    test, msgs = compose_tests(config, built, variant, name, addresses, note)
    sender = sender or make_sender(config.sender)
    report = sender.send(msgs, MemoryLedger(), clock=clock)
    return SentTest(built.issue.key, variant, test.subject, tuple(addresses), frozen, report)
