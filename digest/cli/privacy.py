"""``digest subscribers export EMAIL [--json]`` and ``digest subscribers forget EMAIL``.

Export prints everything digest holds on one address: its list rows, its
stored status, its web sign-up, its theme choice, its consent records, its
ledger rows and its bounce events. Forget erases the address from all of
them (list files included) and keeps only a salted hash, so that no later
list import brings it back.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.text import Text

from digest.cli.base import Context, console, handle_errors, pass_ctx, pipeline, utcnow
from digest.cli.people import subscribers_group
from digest.config import Config
from digest.errors import ConfigError, SubscriberError


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def held_on(config: Config, email: str) -> dict[str, Any]:
    """Everything held on ``email``, as plain JSON values."""
    from digest import subscribers as subs

    key = email.strip().lower()
    with pipeline.open_store(config) as store:
        status = store.subscriber_status([key]).get(key)
        web = store.web_subscriber(key)
        choice = store.theme_choice(key)
        consents = store.consents(key)
        ledger = [
            row for issue in store.ledger_issues_of(key) for row in store.deliveries(issue) if row.email.lower() == key
        ]
        bounces = store.bounce_events(key)
        forgotten = store.forgotten_check()(key)
    rows = subs.find_rows(config.subscribers_dir, key)
    return {
        "email": key,
        "forgotten": forgotten,
        "lists": [
            {"file": f"{config.subscribers_dir.name}/{name}", "line": line, **cells} for name, line, cells in rows
        ],
        "status": None if status is None else str(status),
        "web": None
        if web is None
        else {
            "address": web.address,
            "name": web.name,
            "themes": sorted(web.themes),
            "status": web.status,
            "created_at": _iso(web.created_at),
            "confirmed_at": _iso(web.confirmed_at),
        },
        "theme_choice": None if choice is None else sorted(choice),
        "consents": [
            {"kind": c.kind, "at": _iso(c.at), "text_sha256": c.text_sha256, "detail": c.detail, "ip": c.ip}
            for c in consents
        ],
        "ledger": [
            {
                "issue": r.issue_key,
                "variant": r.variant,
                "state": str(r.state),
                "attempts": r.attempts,
                "last_code": r.last_code,
                "last_error": r.last_error,
            }
            for r in ledger
        ],
        "bounces": [
            {"issue": b.issue_key, "verdict": b.verdict, "status": b.status, "detail": b.detail, "at": _iso(b.at)}
            for b in bounces
        ],
    }


def _address(email: str) -> str:
    from digest import subscribers as subs

    try:
        return subs.normalise_email(email)
    except SubscriberError as exc:
        raise ConfigError(str(exc)) from exc


@subscribers_group.command(name="export")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_ctx
@handle_errors
def subscribers_export(ctx: Context, email: str, as_json: bool) -> None:
    """Everything held on one address (list rows, status, consents, ledger, bounces)."""
    data = held_on(ctx.config, _address(email))
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        return
    console.print(Text(json.dumps(data, ensure_ascii=False, indent=2)))


@subscribers_group.command(name="forget")
@click.argument("email")
@pass_ctx
@handle_errors
def subscribers_forget(ctx: Context, email: str) -> None:
    """Erase one address everywhere; a salted hash keeps list imports from bringing it back."""
    from digest import subscribers as subs

    config = ctx.config
    address = _address(email)
    removed = subs.remove_subscriber(config.subscribers_dir, address)
    with pipeline.open_store(config) as store:
        counts = store.forget(address, utcnow())
    parts = [f"{n} {table}" for table, n in counts.items() if n]
    if removed:
        parts.insert(0, "list rows")
    console.print(Text(f"forgot {address}: " + (", ".join(parts) or "nothing else was held")))
