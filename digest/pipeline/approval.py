"""Approve before send: with ``[editorial] approval = "required"`` an issue waits for ``digest approve``.

``gate`` runs in every real send right after the freeze (``deliver.send_issue``):
the first time, it records the issue as waiting and mails each editor one test
message of it (``testsend``, with the web version's link and the approve
command on top), then stops the send with ``AwaitingApproval``. ``run``
reports that as "waiting for approval since …" and exits 0; ``send`` refuses.

An approval is of exact bytes: the ``fingerprint`` (SHA-256 of every
variant's name, subject, HTML and text). When the frozen bytes change after
approval (a variant added for a subscriber who joined with new themes), the
fingerprint has no approval, the editors get the new bytes, and nothing goes
out until ``approve`` again. After ``hold_timeout``, ``on_timeout = "send"``
records an approval by ``on_timeout`` and sends; ``"hold"`` keeps waiting.
An issue whose send began before approval was required is not stopped.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from digest.config import Config
from digest.errors import AwaitingApproval, ConfigError, SendError
from digest.models import Rendered
from digest.pipeline.issue import Built, renderer_for
from digest.pipeline.testsend import SentTest, send_test
from digest.render import variant_key
from digest.send import Sender
from digest.store import Approval, Store

#: Who approved when ``on_timeout = "send"`` let an issue go without an editor.
BY_TIMEOUT = "on_timeout = send"


def fingerprint(variants: Iterable[Rendered]) -> str:
    """SHA-256 (hex) of the frozen bytes: each variant's name, subject, HTML and text, by variant name."""
    h = hashlib.sha256()
    for r in sorted(variants, key=lambda v: v.variant):
        for part in (r.variant, r.subject, r.html, r.text):
            data = part.encode("utf-8")
            h.update(len(data).to_bytes(8, "big"))  # length-prefixed: no two splits hash alike
            h.update(data)
    return h.hexdigest()


def when(config: Config, at: dt.datetime) -> str:
    """``2018-01-16 18:00 CST``: a time as the digest's time zone shows it."""
    return at.astimezone(config.digest.tz).strftime("%Y-%m-%d %H:%M %Z")


def approve_command(key: str) -> str:
    return f"digest approve --week {key.partition('..')[0]}"


def gate(
    config: Config, store: Store, built: Built, clock: Callable[[], dt.datetime], sender: Sender
) -> tuple[str, ...]:
    """Let the send of ``built`` go on (returning warnings) or raise ``AwaitingApproval``."""
    settings = config.editorial
    if settings.approval != "required":
        return ()
    key = built.issue.key
    fp = fingerprint(built.variants.values())
    if store.approval_request(key) is None and store.deliveries(key):
        return ()  # its send began before approval was required: not stopped half-way
    if store.approval(key, fp) is not None:
        return ()
    request = store.request_approval(key, fp, clock())
    changed = request.notified_at is not None and request.fingerprint != fp
    if request.notified_at is None or changed:
        told = notify_editors(config, store, built, fp, clock, sender).report
        if told.failed:
            # Not marked as told: the next run mails the editors again (the issue waits meanwhile).
            problems = "; ".join(
                f"{email}: {code or ''} {error}".replace("  ", " ") for email, code, error in told.problems
            )
            raise SendError(
                f"the test message to the editors did not go out ({problems}); the issue waits for approval"
            )
        store.mark_notified(key, fp, clock())
    since = when(config, request.since)
    now = clock()
    from digest.pipeline.deliver import human  # deliver imports this module

    timeout = human(settings.hold_timeout)
    if now - request.since >= settings.hold_timeout:
        if settings.on_timeout == "send":
            store.approve(key, fp, BY_TIMEOUT, now)
            return (f"issue {key}: sent without approval: it waited since {since}, longer than hold_timeout {timeout}",)
        raise AwaitingApproval(
            f"issue {key}: waiting for approval since {since} (hold_timeout {timeout} has passed; "
            f"on_timeout = 'hold' keeps it waiting); approve with `{approve_command(key)}`",
            issue_key=key,
            since=request.since,
        )
    again = " (its frozen bytes changed since it was approved)" if changed else ""
    raise AwaitingApproval(
        f"issue {key}: waiting for approval since {since}{again}; approve with `{approve_command(key)}`",
        issue_key=key,
        since=request.since,
    )


def notify_editors(
    config: Config, store: Store, built: Built, fp: str, clock: Callable[[], dt.datetime], sender: Sender
) -> SentTest:
    """Send each editor the test message of the all-themes variant, with where to see it and how to approve."""
    key = built.issue.key
    variant = variant_key(None, built.issue.themes)
    url = renderer_for(config).web_url(key, variant)
    lines = (
        f"Issue {key} waits for your approval before subscribers get it.",
        f"Web version: {url}",
        f"Approve it: {approve_command(key)}",
        f"Fingerprint: {fp}",
    )
    note_html = (
        '<div style="border:2px solid #b45309;padding:12px;margin:12px;font-family:sans-serif">'
        + "<br>".join(html.escape(line) for line in lines[:1])
        + f'<br>Web version: <a href="{html.escape(url, quote=True)}">{html.escape(url)}</a>'
        + "".join("<br>" + html.escape(line) for line in lines[2:])
        + "</div>"
    )
    return send_test(
        config,
        store,
        built.issue.weeks,
        config.editorial.editors,
        clock=clock,
        built=built,
        note=("\n".join(lines), note_html),
        sender=sender,
    )


@dataclass(frozen=True, slots=True)
class Approved:
    """What ``approve`` did: the approval (new or the one there was) and whether it is new."""

    approval: Approval
    fresh: bool


def approver(by: str | None) -> str:
    """``--by NAME`` (checked: one line, 1-100 characters), else the OS user."""
    if by is not None:
        name = by.strip()
        if not name or len(name) > 100 or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ConfigError(f"--by: must be a name of 1 to 100 characters on one line, got {by!r}")
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no $USER: still record something
        return "unknown"


def approve(store: Store, built: Built, by: str, now: dt.datetime) -> Approved:
    """Record that ``by`` approved the frozen bytes of ``built`` now (again: nothing changes)."""
    approval, fresh = store.approve(built.issue.key, fingerprint(built.variants.values()), by, now)
    return Approved(approval, fresh)
