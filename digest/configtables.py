"""The settings of the optional tables of ``digest.toml``: relays, workers, bounces, web, subscribe, store.

Declared like the rest (``configspec.setting``); ``config`` lists them in
``TABLES`` and re-exports them, so ``from digest.config import WebSettings``
keeps working.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digest.configcheck import DAY_S, check_duration, check_port, check_single_line, optional_path, parse_duration
from digest.configspec import BOOL, INT, NUMBER, STR, Reader, fields_of, setting

_RELAY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_CRON = re.compile(r"[0-9*/,\-A-Za-z]+(\s+[0-9*/,\-A-Za-z]+){4,5}")


def _relay_name(r: Reader, where: str, value: str) -> str:
    # The name becomes a queue name and an environment variable suffix: keep it plain.
    if not _RELAY_NAME.fullmatch(value.strip()):
        raise ValueError(f"must be 1-40 letters, digits, '-' or '_', got {value!r}")
    return value.strip()


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """One ``[[sender.relays]]`` entry: where a queue of batches goes, and its caps per worker.

    The password comes from ``$DIGEST_SMTP_PASSWORD_<NAME>``, else ``$DIGEST_SMTP_PASSWORD``.
    """

    name: str = setting("", STR, required=True, check=_relay_name)
    host: str = setting("127.0.0.1", STR, required=True, check=check_single_line)
    port: int = setting(25, INT, check=check_port)
    security: str = setting("none", STR, choices=("none", "starttls", "tls"))
    username: str = setting("", STR, check=check_single_line)
    password: str = setting("", STR, key="")
    connections: int = setting(4, INT, ge=1, le=100)
    rate: float = setting(0.0, NUMBER, ge=0)


def _relays(r: Reader, where: str, raw: list[dict[str, Any]]) -> tuple[RelaySettings, ...]:
    out: list[RelaySettings] = []
    for i, table in enumerate(raw, 1):
        relay = RelaySettings(**r.table(f"{where}[{i}]", table, fields_of(RelaySettings)))
        if any(o.name == relay.name for o in out):
            raise r.fail(f"{where}[{i}].name", f"{relay.name!r} is used by another relay")
        env_key = "DIGEST_SMTP_PASSWORD_" + relay.name.upper().replace("-", "_")
        password = r.env.get(env_key) or r.env.get("DIGEST_SMTP_PASSWORD", "")
        out.append(dataclasses.replace(relay, password=password))
    return tuple(out)


def _cron(r: Reader, where: str, value: str) -> str:
    value = value.strip()
    if value and not _CRON.fullmatch(value):
        raise ValueError(f"must be a cron line of 5 or 6 fields, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class WorkersSettings:
    """``[workers]``: send through Procrastinate workers over the PostgreSQL store."""

    enabled: bool = setting(False, BOOL)
    batch_size: int = setting(1000, INT, ge=1, le=100_000)
    #: Seconds without a worker heartbeat after which its batches are re-queued.
    stalled_after: float = setting(60.0, NUMBER, ge=1, le=DAY_S)
    #: Cron line (5 fields, or 6 with seconds) of the periodic plan; "" follows ``[digest] schedule``.
    plan_cron: str = setting("", STR, check=_cron)


def _bounce_address(r: Reader, where: str, value: str) -> str:
    value = value.strip()
    if value and ("@" not in value or any(c.isspace() or c in '<>+"' for c in value)):
        raise ValueError(f"must be a plain address like bounces@example.org, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class BouncesSettings:
    """``[bounces]``: where bounce mail arrives and how it is scored."""

    address: str = setting("", STR, check=_bounce_address)
    verp: bool = setting(False, BOOL)
    maildir: Path | None = setting(None, STR, check=optional_path)
    imap_host: str = setting("", STR, check=check_single_line)
    imap_port: int = setting(993, INT, check=check_port)
    imap_security: str = setting("tls", STR, choices=("tls", "starttls", "none"))
    imap_user: str = setting("", STR, check=check_single_line)
    imap_password: str = setting("", STR, key="", env="DIGEST_IMAP_PASSWORD")
    imap_folder: str = setting("INBOX", STR, required=True, check=check_single_line)
    imap_processed: str = setting("digest-processed", STR, required=True, check=check_single_line)
    threshold: float = setting(3.0, NUMBER, gt=0, le=1000)
    stale_after: dt.timedelta = setting(dt.timedelta(days=14), STR, check=check_duration)

    @property
    def mailbox(self) -> bool:
        """Whether a bounce mailbox is configured."""
        return self.maildir is not None or bool(self.imap_host)


@dataclass(frozen=True, slots=True)
class WebSettings:
    """``[web]``: the public archive of sent issues."""

    archive: str = setting("off", STR, choices=("off", "public"))
    archive_feed: str = setting("summary", STR, choices=("summary", "full"))


def _consent(r: Reader, where: str, value: str) -> str:
    # Kept exactly as written: the form shows it and the mail quotes it, and its hash is recorded.
    if not value.strip() or len(value) > 2000:
        raise ValueError("must be a sentence of 1 to 2000 characters")
    return value


#: What the subscribe form asks people to agree to, unless ``[subscribe] consent_text`` says otherwise.
DEFAULT_CONSENT = (
    "I agree to receive this digest by email. My address and my theme choices are kept only to send it; "
    "every message has a link to change my themes or to unsubscribe."
)


@dataclass(frozen=True, slots=True)
class SubscribeSettings:
    """``[subscribe]``: the public double opt-in form and its records."""

    enabled: bool = setting(False, BOOL)
    confirm_ttl: dt.timedelta = setting(dt.timedelta(hours=48), STR, check=check_duration)
    purge_unconfirmed_after: dt.timedelta = setting(dt.timedelta(days=7), STR, check=check_duration)
    consent_text: str = setting(DEFAULT_CONSENT, STR, check=_consent)
    record_ip: bool = setting(False, BOOL)
    themes_selectable: bool = setting(True, BOOL)


def _keep(r: Reader, where: str, value: str) -> dt.timedelta:
    kept = parse_duration(value)
    # Less than a day would compact an issue whose bounces and reports are still coming in.
    if kept < dt.timedelta(days=1):
        raise ValueError(f"must be at least a day ('1d'), got {value!r}")
    return kept


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """``[store]``: how long the ledger rows of finished issues and entries no source lists are kept."""

    #: Ledger rows of issues finished longer ago than this become per-issue counts (``digest prune``).
    keep_deliveries: dt.timedelta = setting(dt.timedelta(days=400), STR, check=_keep)
    #: Entries no source has listed for this long (and no unfinished issue needs) are deleted; their ids are kept.
    keep_entries: dt.timedelta = setting(dt.timedelta(days=400), STR, check=_keep)
