"""``digest.toml`` → a typed, validated ``Config``.

Each setting is declared once, beside the field it fills (``setting(default,
kind, ...)``, see ``configspec``); one loader walks every table's specs and
one cross-field step (:func:`_cross_check`) checks what spans fields. Every
problem becomes a ``ConfigError`` that names the file, the key and what is
wrong: ``<file>: <section>.<key>: <problem>``. Secrets come from the
environment (``DIGEST_SMTP_PASSWORD``, ``DIGEST_SECRET``), never only the
file. Relative paths in the file are relative to the file's folder.

What only matters when mail really goes out (a ``[sender]`` table, https
links for a public relay) is checked by :func:`check_sending`, which
``send``, ``run`` and ``schedule`` call; previews and builds do not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import tomllib
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from digest.configcheck import (
    DAY_S,
    SCHEDULE_RE,
    check_address,
    check_base_url,
    check_cidr,
    check_database,
    check_duration,
    check_folder,
    check_port,
    check_readable_file,
    check_single_line,
    check_zone,
    optional_path,
    parse_duration,
)
from digest.configsources import label, read_sources, read_themes
from digest.configspec import BOOL, INT, NUMBER, STR, STRINGS, Reader, did_you_mean, fields_of, setting
from digest.configspec import TABLES as RELAYS
from digest.configtables import (
    DEFAULT_CONSENT,
    BouncesSettings,
    RelaySettings,
    StoreSettings,
    SubscribeSettings,
    WebSettings,
    WorkersSettings,
    _relays,
)
from digest.errors import ConfigError, SubscriberError
from digest.models import OTHER_THEME, Source, Theme
from digest.netutil import is_loopback_host
from digest.subscribers import normalise_email

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "DEFAULT_CONSENT",
    "BouncesSettings",
    "Config",
    "DedupSettings",
    "DigestSettings",
    "EditorialSettings",
    "FetchSettings",
    "IssueSettings",
    "RelaySettings",
    "SenderSettings",
    "StoreSettings",
    "SubscribeSettings",
    "UpdatesSettings",
    "WebSettings",
    "WorkersSettings",
    "check_sending",
    "find_config",
    "load_config",
    "parse_duration",
]

log = logging.getLogger(__name__)

CONFIG_ENV = "DIGEST_CONFIG"
DEFAULT_CONFIG = "digest.toml"


def _title(r: Reader, where: str, value: str) -> str:
    return check_single_line(r, where, value.strip())


def _list_id(r: Reader, where: str, value: str) -> str:
    value = check_single_line(r, where, value.strip())
    if len(value.encode("utf-8")) > 255:
        raise ValueError(f"must be at most 255 octets (RFC 2919), got {len(value.encode('utf-8'))}")
    return value


def _schedule(r: Reader, where: str, value: str) -> str:
    value = value.strip().lower()
    if not SCHEDULE_RE.match(value):
        raise ValueError(f"must look like 'mon 08:00', got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class DigestSettings:
    title: str = setting("Weekly Digest", STR, required=True, check=_title)
    timezone: str = setting("UTC", STR, check=check_zone)
    schedule: str = setting("mon 08:00", STR, check=_schedule)
    database: str = setting("sqlite:///digest.db", STR, check=check_database, check_default=True)
    base_url: str = setting("http://127.0.0.1:8025", STR, check=check_base_url)
    min_entries: int = setting(1, INT, ge=0)
    secret: str = setting("", STR, env="DIGEST_SECRET")
    list_id: str = setting("", STR, check=_list_id)
    templates: Path | None = setting(None, STR, check=check_folder)
    subscribers: Path | None = setting(None, STR, check=optional_path)
    editions: Path | None = setting(None, STR, check=optional_path)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def schedule_parts(self) -> tuple[str, int, int]:
        """``("mon", 8, 0)`` for ``"mon 08:00"``."""
        m = SCHEDULE_RE.match(self.schedule)
        assert m is not None  # validated on load
        return m.group(1), int(m.group(2)), int(m.group(3))


@dataclass(frozen=True, slots=True)
class FetchSettings:
    connect_timeout: float = setting(10.0, NUMBER, gt=0, le=DAY_S)
    deadline: float = setting(30.0, NUMBER, gt=0, le=DAY_S)
    max_bytes: int = setting(10_000_000, INT, ge=1)
    max_redirects: int = setting(5, INT, ge=0, le=20)
    concurrency: int = setting(8, INT, ge=1, le=256)
    user_agent: str = setting(
        "digest/0.1 (+https://github.com/digest-newsletter/digest)", STR, required=True, check=check_single_line
    )
    broken_ratio: float = setting(0.5, NUMBER, ge=0, le=1)
    #: Addresses or CIDRs (as written) that the fetcher may reach although they are private.
    allow_private: tuple[str, ...] = setting((), STRINGS, check=check_cidr)
    #: Entries kept per source per fetch (the newest).
    max_entries: int = setting(500, INT, ge=1)
    #: Characters kept of an entry's summary and of its content.
    max_text: int = setting(65_536, INT, ge=1)
    #: Consecutive failed runs after which a source is called out.
    alert_after: int = setting(3, INT, ge=1)


@dataclass(frozen=True, slots=True)
class IssueSettings:
    """``[issue]``: how big an issue is and when a thin week is held."""

    min_entries: int = setting(1, INT, ge=0)
    min_per_theme: int = setting(1, INT, ge=0)
    max_hold_weeks: int = setting(3, INT, ge=0)
    max_entries: int = setting(60, INT, ge=1)


@dataclass(frozen=True, slots=True)
class DedupSettings:
    """``[dedup]``: grouping one story carried by several sources."""

    enabled: bool = setting(True, BOOL)
    window_hours: float = setting(72.0, NUMBER, gt=0, le=24 * 366)
    title_ratio: float = setting(0.85, NUMBER, gt=0, le=1)
    text_jaccard: float = setting(0.6, NUMBER, gt=0, le=1)
    prefer: tuple[str, ...] = setting((), STRINGS)


@dataclass(frozen=True, slots=True)
class UpdatesSettings:
    """``[updates]``: what happens to an entry that changed after it was sent."""

    policy: str = setting("ignore", STR, choices=("ignore", "section"))


def _editors(r: Reader, where: str, value: tuple[str, ...]) -> tuple[str, ...]:
    # Checked as subscriber addresses are: each editor gets a test message of every issue to approve.
    out: list[str] = []
    for address in value:
        try:
            out.append(normalise_email(check_single_line(r, where, address)))
        except SubscriberError as exc:
            raise ValueError(f"must be plain addresses like ed@example.org: {exc}") from None
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class EditorialSettings:
    """``[editorial]``: whether an editor approves each issue before subscribers get it."""

    approval: str = setting("none", STR, choices=("none", "required"))
    #: Who gets the test message of an issue waiting for approval.
    editors: tuple[str, ...] = setting((), STRINGS, check=_editors)
    #: How long an issue waits for approval before ``on_timeout`` applies.
    hold_timeout: dt.timedelta = setting(dt.timedelta(hours=48), STR, check=check_duration)
    on_timeout: str = setting("hold", STR, choices=("hold", "send"))


@dataclass(frozen=True, slots=True)
class SenderSettings:
    from_: str = setting("Weekly Digest <digest@example.org>", STR, key="from", check=check_address)
    transport: str = setting("maildir", STR, choices=("smtp", "maildir"))
    host: str = setting("127.0.0.1", STR, required=True, check=check_single_line)
    port: int = setting(25, INT, check=check_port)
    security: str = setting("none", STR, choices=("none", "starttls", "tls"))
    username: str = setting("", STR, check=check_single_line)
    password: str = setting("", STR, key="", env="DIGEST_SMTP_PASSWORD")
    connections: int = setting(4, INT, ge=1, le=100)
    rate: float = setting(0.0, NUMBER, ge=0)
    maildir: Path = setting(
        Path("outbox"), STR, required=True, check=lambda r, w, v: r.local_path(str(v)), check_default=True
    )
    per_connection: int = setting(100, INT, ge=1)
    unsubscribe_mailto: str = setting("", STR, check=check_single_line)
    dkim_selector: str = setting("", STR, check=check_single_line)
    dkim_key: Path | None = setting(None, STR, check=check_readable_file)
    resend_unknown: bool = setting(False, BOOL)
    max_attempts: int = setting(5, INT, ge=1)
    timeout: float = setting(30.0, NUMBER, gt=0, le=DAY_S)
    retry_for: dt.timedelta = setting(dt.timedelta(hours=72), STR, check=check_duration)
    #: ``[[sender.relays]]``: several relays, a queue of batches each (workers only).
    relays: tuple[RelaySettings, ...] = setting((), RELAYS, check=lambda r, w, v: _relays(r, w, v))


#: The settings tables of ``digest.toml``, in file order.
TABLES: dict[str, type] = {
    "digest": DigestSettings,
    "fetch": FetchSettings,
    "issue": IssueSettings,
    "dedup": DedupSettings,
    "updates": UpdatesSettings,
    "editorial": EditorialSettings,
    "sender": SenderSettings,
    "bounces": BouncesSettings,
    "web": WebSettings,
    "workers": WorkersSettings,
    "subscribe": SubscribeSettings,
    "store": StoreSettings,
}
SECTIONS = (*TABLES, "sources", "themes")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. Only ``pipeline``, ``cli`` and ``schedule`` see it.

    ``absent`` names the top-level tables the file did not have (their
    defaults apply); a Config built in code has none absent.
    """

    path: Path
    digest: DigestSettings = field(default_factory=DigestSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    sender: SenderSettings = field(default_factory=SenderSettings)
    issue: IssueSettings = field(default_factory=IssueSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    updates: UpdatesSettings = field(default_factory=UpdatesSettings)
    editorial: EditorialSettings = field(default_factory=EditorialSettings)
    web: WebSettings = field(default_factory=WebSettings)
    bounces: BouncesSettings = field(default_factory=BouncesSettings)
    workers: WorkersSettings = field(default_factory=WorkersSettings)
    subscribe: SubscribeSettings = field(default_factory=SubscribeSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    sources: tuple[Source, ...] = ()
    themes: tuple[Theme, ...] = ()
    absent: frozenset[str] = frozenset()

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def templates_dir(self) -> Path:
        return self.digest.templates or self.base_dir / "templates"

    @property
    def subscribers_dir(self) -> Path:
        return self.digest.subscribers or self.base_dir / "subscribers"

    @property
    def editions_dir(self) -> Path:
        return self.digest.editions or self.base_dir / "editions"


def find_config(explicit: str | Path | None) -> Path:
    """The config path: the argument, else ``$DIGEST_CONFIG``, else ``./digest.toml``."""
    raw = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    return Path(raw).expanduser().resolve()


def load_config(path: Path, env: dict[str, str] | None = None) -> Config:
    """Read and validate ``path``; raise ``ConfigError`` naming file, key, problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (run `digest init` or pass --config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    r = Reader(path, env)
    r.unknown("", data, SECTIONS, "section")
    tables: dict[str, Any] = {
        name: cls(**r.table(name, data.get(name, {}), fields_of(cls))) for name, cls in TABLES.items()
    }
    issue_raw = data.get("issue", {})
    if "min_entries" not in issue_raw:
        # [digest] min_entries is the older spelling of [issue] min_entries.
        tables["issue"] = dataclasses.replace(tables["issue"], min_entries=tables["digest"].min_entries)
    themes = read_themes(r, data.get("themes", []))
    config = Config(
        path=path,
        sources=read_sources(r, data.get("sources", [])),
        themes=themes,
        absent=frozenset(name for name in TABLES if name not in data),
        **tables,
    )
    _cross_check(r, config)
    log.debug("loaded %s: %d source(s), %d theme(s)", path, len(config.sources), len(config.themes))
    return config


def _cross_check(r: Reader, config: Config) -> None:
    """The checks that span fields or tables, once over the whole Config."""
    s = config.sender
    if bool(s.dkim_key) != bool(s.dkim_selector):
        raise r.fail("sender.dkim_key", "dkim_key and dkim_selector go together")
    w = config.workers
    if w.enabled:
        if config.sender.transport != "smtp":
            raise r.fail("workers.enabled", "the workers send over SMTP: set [sender] transport = 'smtp'")
        if not config.digest.database.startswith("postgresql+psycopg://"):
            raise r.fail(
                "workers.enabled", "needs a PostgreSQL database: set [digest] database = 'postgresql+psycopg://...'"
            )
        try:
            import procrastinate  # noqa: F401
        except ImportError:
            raise r.fail("workers.enabled", "needs the workers extra: pip install 'digest[workers]'") from None
    if config.editorial.approval == "required" and not config.editorial.editors:
        raise r.fail("editorial.editors", "approval = 'required' needs at least one editor address")
    b = config.bounces
    if b.verp and not b.address:
        raise r.fail("bounces.verp", "needs bounces.address (the VERP tags are added to it)")
    if b.maildir is not None and b.imap_host:
        raise r.fail("bounces.maildir", "give maildir or imap_host, not both")
    themes = [t.name for t in config.themes]
    sources = [src.name for src in config.sources]
    if themes:
        for i, src in enumerate(config.sources, 1):
            if src.theme is not None and src.theme not in themes and src.theme != OTHER_THEME:
                raise r.fail(
                    f"{label('sources', i, src.name)}.theme",
                    f"no theme named {src.theme!r}{did_you_mean(src.theme, themes)}; themes: {', '.join(themes)}",
                )
    if sources:
        for i, theme in enumerate(config.themes, 1):
            for name in theme.sources:
                if name.casefold() not in {n.casefold() for n in sources}:
                    raise r.fail(
                        f"{label('themes', i, theme.name)}.sources",
                        f"no source named {name!r}{did_you_mean(name, sources)}",
                    )
        for name in config.dedup.prefer:
            if name not in sources:
                raise r.fail("dedup.prefer", f"no source named {name!r}{did_you_mean(name, sources)}")


#: Domains reserved for documentation (RFC 2606): mail "from" them is a config left as shipped.
EXAMPLE_DOMAINS = ("example.org", "example.com", "example.net")


def check_sending(config: Config) -> tuple[str, ...]:
    """What ``send``, ``run`` and ``schedule`` require before anything goes out; returns warnings.

    Raises ``ConfigError`` when the file has no ``[sender]`` table (a file
    cut short must not send with defaults), and when mail goes over SMTP to
    a relay that is not this machine while ``base_url`` is not https
    (Gmail and Yahoo require an https one-click unsubscribe link). Warns, in
    that case, while ``from`` is still at a documentation domain such as
    example.org. A Maildir, or a relay on this machine (a test server, the
    host's own MTA), needs neither.
    """
    path, s = config.path, config.sender
    if "sender" in config.absent:
        raise ConfigError(
            f"{path}: sender: no [sender] table, so nothing can be sent (is the file cut short?); "
            'add [sender] with transport = "maildir" or "smtp"'
        )
    if s.transport != "smtp" or is_loopback_host(s.host):
        return ()  # a Maildir, a test server or the host's own MTA
    if not config.digest.base_url.startswith("https://"):
        raise ConfigError(
            f"{path}: digest.base_url: must be an https URL to send over SMTP to {s.host} "
            f"(Gmail and Yahoo need https one-click unsubscribe links), got {config.digest.base_url!r}"
        )
    warnings: list[str] = []
    domain = parseaddr(s.from_)[1].rpartition("@")[2].lower()
    if domain in EXAMPLE_DOMAINS or domain.endswith(tuple("." + d for d in EXAMPLE_DOMAINS)):
        warnings.append(
            f"{path}: sender.from: {s.from_!r} is still at {domain}; receivers will reject or junk it (set your own)"
        )
    return tuple(warnings)
