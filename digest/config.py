"""``digest.toml`` → a typed, validated ``Config``.

The file is read and checked once; every problem becomes a ``ConfigError``
that names the file, the key and what is wrong. Secrets come from the
environment (``DIGEST_SMTP_PASSWORD``, ``DIGEST_SECRET``), never the file.
Relative paths in the file are relative to the file's folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import ConfigError
from digest.models import (
    DEFAULT_TEXT_RECORD,
    ListingFormat,
    Selectors,
    Source,
    SourceKind,
    Theme,
)

CONFIG_ENV = "DIGEST_CONFIG"
DEFAULT_CONFIG = "digest.toml"
RECORD_PARTS = frozenset({"title", "link", "authors", "date", "summary"})
_SCHEDULE_RE = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)\s+([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class DigestSettings:
    title: str = "Weekly Digest"
    timezone: str = "UTC"
    schedule: str = "mon 08:00"
    database: str = "sqlite:///digest.db"
    base_url: str = "http://127.0.0.1:8025"
    min_entries: int = 1
    secret: str = ""
    list_id: str = ""
    templates: Path | None = None
    subscribers: Path | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def schedule_parts(self) -> tuple[str, int, int]:
        """``("mon", 8, 0)`` for ``"mon 08:00"``."""
        m = _SCHEDULE_RE.match(self.schedule)
        assert m is not None  # validated on load
        return m.group(1), int(m.group(2)), int(m.group(3))


@dataclass(frozen=True, slots=True)
class FetchSettings:
    connect_timeout: float = 10.0
    deadline: float = 30.0
    max_bytes: int = 10_000_000
    max_redirects: int = 5
    concurrency: int = 8
    user_agent: str = "digest/0.1 (+https://github.com/digest-newsletter/digest)"
    broken_ratio: float = 0.5
    #: Addresses or CIDRs (as written) that the fetcher may reach although they are private.
    allow_private: tuple[str, ...] = ()
    #: Entries kept per source per fetch (the newest).
    max_entries: int = 500
    #: Characters kept of an entry's summary and of its content.
    max_text: int = 65_536
    #: Consecutive failed runs after which a source is called out.
    alert_after: int = 3


@dataclass(frozen=True, slots=True)
class IssueSettings:
    """``[issue]``: how big an issue is and when a thin week is held."""

    min_entries: int = 1
    min_per_theme: int = 1
    max_hold_weeks: int = 3
    max_entries: int = 60


@dataclass(frozen=True, slots=True)
class DedupSettings:
    """``[dedup]``: grouping one story carried by several sources."""

    enabled: bool = True
    window_hours: float = 72.0
    title_ratio: float = 0.85
    text_jaccard: float = 0.6
    prefer: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BouncesSettings:
    """``[bounces]``: where bounce mail arrives and how it is scored."""

    address: str = ""
    verp: bool = False
    maildir: Path | None = None
    imap_host: str = ""
    imap_port: int = 993
    imap_security: str = "tls"
    imap_user: str = ""
    imap_password: str = ""
    imap_folder: str = "INBOX"
    imap_processed: str = "digest-processed"
    threshold: float = 3.0
    stale_after: dt.timedelta = dt.timedelta(days=14)

    @property
    def mailbox(self) -> bool:
        """Whether a bounce mailbox is configured."""
        return self.maildir is not None or bool(self.imap_host)


@dataclass(frozen=True, slots=True)
class WebSettings:
    """``[web]``: the public archive of sent issues."""

    archive: str = "off"
    archive_feed: str = "summary"


#: What the subscribe form asks people to agree to, unless ``[subscribe] consent_text`` says otherwise.
DEFAULT_CONSENT = (
    "I agree to receive this digest by email. My address and my theme choices are kept only to send it; "
    "every message has a link to change my themes or to unsubscribe."
)


@dataclass(frozen=True, slots=True)
class SubscribeSettings:
    """``[subscribe]``: the public double opt-in form and its records."""

    enabled: bool = False
    confirm_ttl: dt.timedelta = dt.timedelta(hours=48)
    purge_unconfirmed_after: dt.timedelta = dt.timedelta(days=7)
    consent_text: str = DEFAULT_CONSENT
    record_ip: bool = False
    themes_selectable: bool = True


@dataclass(frozen=True, slots=True)
class UpdatesSettings:
    """``[updates]``: what happens to an entry that changed after it was sent."""

    policy: str = "ignore"


@dataclass(frozen=True, slots=True)
class SenderSettings:
    from_: str = "Weekly Digest <digest@example.org>"
    transport: str = "maildir"
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"
    username: str = ""
    password: str = ""
    connections: int = 4
    rate: float = 0.0
    maildir: Path = Path("outbox")
    per_connection: int = 100
    unsubscribe_mailto: str = ""
    dkim_selector: str = ""
    dkim_key: Path | None = None
    resend_unknown: bool = False
    max_attempts: int = 5
    timeout: float = 30.0
    retry_for: dt.timedelta = dt.timedelta(hours=72)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. Only ``pipeline``, ``cli`` and ``schedule`` see it."""

    path: Path
    digest: DigestSettings = field(default_factory=DigestSettings)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    sender: SenderSettings = field(default_factory=SenderSettings)
    issue: IssueSettings = field(default_factory=IssueSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    updates: UpdatesSettings = field(default_factory=UpdatesSettings)
    web: WebSettings = field(default_factory=WebSettings)
    bounces: BouncesSettings = field(default_factory=BouncesSettings)
    subscribe: SubscribeSettings = field(default_factory=SubscribeSettings)
    sources: tuple[Source, ...] = ()
    themes: tuple[Theme, ...] = ()

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def templates_dir(self) -> Path:
        return self.digest.templates or self.base_dir / "templates"

    @property
    def subscribers_dir(self) -> Path:
        return self.digest.subscribers or self.base_dir / "subscribers"


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(raw: str) -> dt.timedelta:
    """``"90s"``, ``"15m"``, ``"72h"``, ``"7d"``, ``"2w"`` → a positive timedelta; ``ValueError`` otherwise."""
    m = _DURATION_RE.match(raw)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"must be a duration like '90s', '15m', '72h' or '7d', got {raw!r}")
    return dt.timedelta(seconds=float(m.group(1)) * _DURATION_UNITS[m.group(2)])


def find_config(explicit: str | os.PathLike[str] | None) -> Path:
    """The config path: the argument, else ``$DIGEST_CONFIG``, else ``./digest.toml``."""
    raw = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    return Path(raw).expanduser().resolve()


def load_config(path: Path, env: dict[str, str] | None = None) -> Config:
    """Read and validate ``path``; raise ``ConfigError`` naming file, key, problem."""
    env = dict(os.environ) if env is None else env
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (run `digest init` or pass --config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return _Reader(path, env).config(data)


class _Reader:
    """Walks the TOML tree, remembering where it is for error messages."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {problem}")

    def table(self, data: dict[str, Any], key: str, known: set[str]) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        unknown = sorted(set(value) - known)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", "unknown key")
        return value

    def get(self, data: dict[str, Any], where: str, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in data:
            return default
        value = data[key]
        # bool is an int in Python; a bool where a number is wanted is a mistake.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(f"{where}.{key}", f"must be {names}, got {value!r}")
        return value

    def strings(self, data: dict[str, Any], where: str, key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{where}.{key}", "must be a list of strings")
        return tuple(v.strip() for v in value if v.strip())

    def local_path(self, raw: str) -> Path:
        p = Path(raw).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    def config(self, data: dict[str, Any]) -> Config:
        unknown = sorted(
            set(data)
            - {
                "digest",
                "fetch",
                "sender",
                "issue",
                "dedup",
                "updates",
                "web",
                "bounces",
                "subscribe",
                "sources",
                "themes",
            }
        )
        if unknown:
            raise self.fail(unknown[0], "unknown section")
        digest = self.digest(data)
        themes = self.themes(data.get("themes", []))
        sources = self.sources(data.get("sources", []), {t.name for t in themes})
        return Config(
            path=self.path,
            digest=digest,
            fetch=self.fetch(data),
            sender=self.sender(data),
            issue=self.issue(data, digest.min_entries),
            dedup=self.dedup(data),
            updates=self.updates(data),
            web=self.web(data),
            bounces=self.bounces(data),
            subscribe=self.subscribe(data),
            sources=sources,
            themes=themes,
        )

    def digest(self, data: dict[str, Any]) -> DigestSettings:
        d = DigestSettings()
        t = self.table(data, "digest", set(DigestSettings.__slots__))  # type: ignore[attr-defined]
        w = "digest"
        tz = self.get(t, w, "timezone", str, d.timezone)
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail(
                "digest.timezone", f"unknown time zone {tz!r} (use an IANA name like Europe/Berlin)"
            ) from None
        schedule = self.get(t, w, "schedule", str, d.schedule).strip().lower()
        if not _SCHEDULE_RE.match(schedule):
            raise self.fail("digest.schedule", f"must look like 'mon 08:00', got {schedule!r}")
        database = self.get(t, w, "database", str, d.database)
        database = self._database_url(database)
        base_url = self.get(t, w, "base_url", str, d.base_url).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise self.fail("digest.base_url", f"must be an http(s) URL, got {base_url!r}")
        min_entries = self.get(t, w, "min_entries", int, d.min_entries)
        if min_entries < 0:
            raise self.fail("digest.min_entries", "must be 0 or more")
        templates = self.get(t, w, "templates", str, None)
        subscribers = self.get(t, w, "subscribers", str, None)
        title = self.get(t, w, "title", str, d.title).strip()
        if not title:
            raise self.fail("digest.title", "must not be empty")
        return DigestSettings(
            title=title,
            timezone=tz,
            schedule=schedule,
            database=database,
            base_url=base_url,
            min_entries=min_entries,
            secret=self.env.get("DIGEST_SECRET") or self.get(t, w, "secret", str, ""),
            list_id=self.get(t, w, "list_id", str, ""),
            templates=self.local_path(templates) if templates else None,
            subscribers=self.local_path(subscribers) if subscribers else None,
        )

    def _database_url(self, url: str) -> str:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url.removeprefix("sqlite:///")
            if rel and rel != ":memory:":
                return "sqlite:///" + str(self.local_path(rel))
        if "://" not in url:
            raise self.fail("digest.database", f"must be a database URL like sqlite:///digest.db, got {url!r}")
        return url

    def fetch(self, data: dict[str, Any]) -> FetchSettings:
        d = FetchSettings()
        t = self.table(data, "fetch", set(FetchSettings.__slots__))  # type: ignore[attr-defined]
        num = (int, float)
        s = FetchSettings(
            connect_timeout=float(self.get(t, "fetch", "connect_timeout", num, d.connect_timeout)),
            deadline=float(self.get(t, "fetch", "deadline", num, d.deadline)),
            max_bytes=self.get(t, "fetch", "max_bytes", int, d.max_bytes),
            max_redirects=self.get(t, "fetch", "max_redirects", int, d.max_redirects),
            concurrency=self.get(t, "fetch", "concurrency", int, d.concurrency),
            user_agent=self.get(t, "fetch", "user_agent", str, d.user_agent),
            broken_ratio=float(self.get(t, "fetch", "broken_ratio", num, d.broken_ratio)),
            allow_private=self.strings(t, "fetch", "allow_private"),
            max_entries=self.get(t, "fetch", "max_entries", int, d.max_entries),
            max_text=self.get(t, "fetch", "max_text", int, d.max_text),
            alert_after=self.get(t, "fetch", "alert_after", int, d.alert_after),
        )
        for net in s.allow_private:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise self.fail("fetch.allow_private", f"not an address or CIDR: {net!r}") from None
        for key in (
            "connect_timeout",
            "deadline",
            "max_bytes",
            "concurrency",
            "max_entries",
            "max_text",
            "alert_after",
        ):
            if getattr(s, key) <= 0:
                raise self.fail(f"fetch.{key}", "must be greater than 0")
        if not 0 <= s.max_redirects <= 20:
            raise self.fail("fetch.max_redirects", "must be between 0 and 20")
        return s

    def sender(self, data: dict[str, Any]) -> SenderSettings:
        d = SenderSettings()
        known = {k for k in SenderSettings.__slots__ if k not in ("from_", "password")} | {"from"}  # type: ignore[attr-defined]
        t = self.table(data, "sender", known)
        w = "sender"
        from_ = self.get(t, w, "from", str, d.from_)
        if "@" not in from_:
            raise self.fail("sender.from", f"must be an address like 'Name <digest@example.org>', got {from_!r}")
        transport = self.get(t, w, "transport", str, d.transport)
        if transport not in ("smtp", "maildir"):
            raise self.fail("sender.transport", f"must be 'smtp' or 'maildir', got {transport!r}")
        security = self.get(t, w, "security", str, d.security)
        if security not in ("none", "starttls", "tls"):
            raise self.fail("sender.security", f"must be 'none', 'starttls' or 'tls', got {security!r}")
        port = self.get(t, w, "port", int, d.port)
        if not 0 < port < 65536:
            raise self.fail("sender.port", f"must be a TCP port, got {port}")
        connections = self.get(t, w, "connections", int, d.connections)
        if connections < 1:
            raise self.fail("sender.connections", "must be at least 1")
        rate = float(self.get(t, w, "rate", (int, float), d.rate))
        if rate < 0:
            raise self.fail("sender.rate", "must be 0 (no limit) or more")
        dkim_key = self.get(t, w, "dkim_key", str, "")
        dkim_selector = self.get(t, w, "dkim_selector", str, "")
        if bool(dkim_key) != bool(dkim_selector):
            raise self.fail("sender.dkim_key", "dkim_key and dkim_selector go together")
        return SenderSettings(
            from_=from_,
            transport=transport,
            host=self.get(t, w, "host", str, d.host),
            port=port,
            security=security,
            username=self.get(t, w, "username", str, d.username),
            password=self.env.get("DIGEST_SMTP_PASSWORD", ""),
            connections=connections,
            rate=rate,
            maildir=self.local_path(self.get(t, w, "maildir", str, str(d.maildir))),
            per_connection=self.get(t, w, "per_connection", int, d.per_connection),
            unsubscribe_mailto=self.get(t, w, "unsubscribe_mailto", str, ""),
            dkim_selector=dkim_selector,
            dkim_key=self.local_path(dkim_key) if dkim_key else None,
            resend_unknown=self.get(t, w, "resend_unknown", bool, d.resend_unknown),
            max_attempts=self.get(t, w, "max_attempts", int, d.max_attempts),
            timeout=float(self.get(t, w, "timeout", (int, float), d.timeout)),
            retry_for=self.duration(t, w, "retry_for", d.retry_for),
        )

    def duration(self, data: dict[str, Any], where: str, key: str, default: dt.timedelta) -> dt.timedelta:
        raw = self.get(data, where, key, str, None)
        if raw is None:
            return default
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise self.fail(f"{where}.{key}", str(exc)) from None

    def issue(self, data: dict[str, Any], min_entries: int) -> IssueSettings:
        d = IssueSettings()
        t = self.table(data, "issue", set(IssueSettings.__slots__))  # type: ignore[attr-defined]
        s = IssueSettings(
            # [digest] min_entries is the older spelling of [issue] min_entries.
            min_entries=self.get(t, "issue", "min_entries", int, min_entries),
            min_per_theme=self.get(t, "issue", "min_per_theme", int, d.min_per_theme),
            max_hold_weeks=self.get(t, "issue", "max_hold_weeks", int, d.max_hold_weeks),
            max_entries=self.get(t, "issue", "max_entries", int, d.max_entries),
        )
        for key in ("min_entries", "min_per_theme", "max_hold_weeks"):
            if getattr(s, key) < 0:
                raise self.fail(f"issue.{key}", "must be 0 or more")
        if s.max_entries < 1:
            raise self.fail("issue.max_entries", "must be at least 1")
        return s

    def dedup(self, data: dict[str, Any]) -> DedupSettings:
        d = DedupSettings()
        t = self.table(data, "dedup", set(DedupSettings.__slots__))  # type: ignore[attr-defined]
        num = (int, float)
        s = DedupSettings(
            enabled=self.get(t, "dedup", "enabled", bool, d.enabled),
            window_hours=float(self.get(t, "dedup", "window_hours", num, d.window_hours)),
            title_ratio=float(self.get(t, "dedup", "title_ratio", num, d.title_ratio)),
            text_jaccard=float(self.get(t, "dedup", "text_jaccard", num, d.text_jaccard)),
            prefer=self.strings(t, "dedup", "prefer"),
        )
        if s.window_hours <= 0:
            raise self.fail("dedup.window_hours", "must be greater than 0")
        for key in ("title_ratio", "text_jaccard"):
            if not 0 < getattr(s, key) <= 1:
                raise self.fail(f"dedup.{key}", "must be between 0 (excluded) and 1")
        return s

    def bounces(self, data: dict[str, Any]) -> BouncesSettings:
        d = BouncesSettings()
        known = set(BouncesSettings.__slots__) - {"imap_password"}  # type: ignore[attr-defined]
        t = self.table(data, "bounces", known)
        w = "bounces"
        address = self.get(t, w, "address", str, d.address).strip()
        if address and ("@" not in address or any(c.isspace() or c in "<>+" for c in address)):
            raise self.fail("bounces.address", f"must be a plain address like bounces@example.org, got {address!r}")
        verp = self.get(t, w, "verp", bool, d.verp)
        if verp and not address:
            raise self.fail("bounces.verp", "needs bounces.address (the VERP tags are added to it)")
        maildir = self.get(t, w, "maildir", str, "")
        imap_host = self.get(t, w, "imap_host", str, "").strip()
        if maildir and imap_host:
            raise self.fail("bounces.maildir", "give maildir or imap_host, not both")
        security = self.get(t, w, "imap_security", str, d.imap_security)
        if security not in ("tls", "starttls", "none"):
            raise self.fail("bounces.imap_security", f"must be 'tls', 'starttls' or 'none', got {security!r}")
        port = self.get(t, w, "imap_port", int, 143 if security != "tls" else d.imap_port)
        if not 0 < port < 65536:
            raise self.fail("bounces.imap_port", f"must be a TCP port, got {port}")
        threshold = float(self.get(t, w, "threshold", (int, float), d.threshold))
        if not 0 < threshold < 1000:
            raise self.fail("bounces.threshold", "must be greater than 0")
        return BouncesSettings(
            address=address,
            verp=verp,
            maildir=self.local_path(maildir) if maildir else None,
            imap_host=imap_host,
            imap_port=port,
            imap_security=security,
            imap_user=self.get(t, w, "imap_user", str, ""),
            imap_password=self.env.get("DIGEST_IMAP_PASSWORD", ""),
            imap_folder=self.get(t, w, "imap_folder", str, d.imap_folder),
            imap_processed=self.get(t, w, "imap_processed", str, d.imap_processed),
            threshold=threshold,
            stale_after=self.duration(t, w, "stale_after", d.stale_after),
        )

    def web(self, data: dict[str, Any]) -> WebSettings:
        t = self.table(data, "web", set(WebSettings.__slots__))  # type: ignore[attr-defined]
        archive = self.get(t, "web", "archive", str, WebSettings().archive)
        if archive not in ("off", "public"):
            raise self.fail("web.archive", f"must be 'off' or 'public', got {archive!r}")
        feed = self.get(t, "web", "archive_feed", str, WebSettings().archive_feed)
        if feed not in ("summary", "full"):
            raise self.fail("web.archive_feed", f"must be 'summary' or 'full', got {feed!r}")
        return WebSettings(archive=archive, archive_feed=feed)

    def subscribe(self, data: dict[str, Any]) -> SubscribeSettings:
        d = SubscribeSettings()
        t = self.table(data, "subscribe", set(SubscribeSettings.__slots__))  # type: ignore[attr-defined]
        w = "subscribe"
        # Kept exactly as written: the form shows it and the mail quotes it, and its hash is recorded.
        consent = self.get(t, w, "consent_text", str, d.consent_text)
        if not consent.strip() or len(consent) > 2000:
            raise self.fail("subscribe.consent_text", "must be a sentence of 1 to 2000 characters")
        return SubscribeSettings(
            enabled=self.get(t, w, "enabled", bool, d.enabled),
            confirm_ttl=self.duration(t, w, "confirm_ttl", d.confirm_ttl),
            purge_unconfirmed_after=self.duration(t, w, "purge_unconfirmed_after", d.purge_unconfirmed_after),
            consent_text=consent,
            record_ip=self.get(t, w, "record_ip", bool, d.record_ip),
            themes_selectable=self.get(t, w, "themes_selectable", bool, d.themes_selectable),
        )

    def updates(self, data: dict[str, Any]) -> UpdatesSettings:
        t = self.table(data, "updates", set(UpdatesSettings.__slots__))  # type: ignore[attr-defined]
        policy = self.get(t, "updates", "policy", str, UpdatesSettings().policy)
        if policy not in ("ignore", "section"):
            raise self.fail("updates.policy", f"must be 'ignore' or 'section', got {policy!r}")
        return UpdatesSettings(policy=policy)

    def themes(self, raw: Any) -> tuple[Theme, ...]:
        if not isinstance(raw, list):
            raise self.fail("themes", "must be an array of tables ([[themes]])")
        out: list[Theme] = []
        seen: set[str] = set()
        for i, t in enumerate(raw):
            w = f"themes[{i}]"
            if not isinstance(t, dict):
                raise self.fail(w, "must be a table")
            unknown = sorted(set(t) - {"name", "keywords", "phrases", "categories", "sources"})
            if unknown:
                raise self.fail(f"{w}.{unknown[0]}", "unknown key")
            name = self.get(t, w, "name", str, "").strip()
            if not name:
                raise self.fail(f"{w}.name", "is required")
            if name.casefold() in seen:
                raise self.fail(f"{w}.name", f"theme {name!r} is defined twice")
            seen.add(name.casefold())
            theme = Theme(
                name=name,
                keywords=self.strings(t, w, "keywords"),
                phrases=self.strings(t, w, "phrases"),
                categories=self.strings(t, w, "categories"),
                sources=self.strings(t, w, "sources"),
            )
            if not (theme.keywords or theme.phrases or theme.categories or theme.sources):
                raise self.fail(w, f"theme {name!r} can never match: give keywords, phrases, categories or sources")
            out.append(theme)
        return tuple(out)

    def sources(self, raw: Any, themes: set[str]) -> tuple[Source, ...]:
        if not isinstance(raw, list):
            raise self.fail("sources", "must be an array of tables ([[sources]])")
        out: list[Source] = []
        names: set[str] = set()
        known = {"name", "kind", "url", "format", "theme", "selectors", "date_format", "record"}
        for i, s in enumerate(raw):
            w = f"sources[{i}]"
            if not isinstance(s, dict):
                raise self.fail(w, "must be a table")
            unknown = sorted(set(s) - known)
            if unknown:
                raise self.fail(f"{w}.{unknown[0]}", "unknown key")
            name = self.get(s, w, "name", str, "").strip()
            if not name:
                raise self.fail(f"{w}.name", "is required")
            if name in names:
                raise self.fail(f"{w}.name", f"source {name!r} is defined twice")
            names.add(name)
            kind_raw = self.get(s, w, "kind", str, "feed")
            try:
                kind = SourceKind(kind_raw)
            except ValueError:
                raise self.fail(f"{w}.kind", f"must be 'feed' or 'listing', got {kind_raw!r}") from None
            url = self.get(s, w, "url", str, "").strip()
            if not url:
                raise self.fail(f"{w}.url", "is required")
            if "://" in url:
                if not url.startswith(("http://", "https://")):
                    raise self.fail(f"{w}.url", f"only http(s) URLs or local paths are allowed, got {url!r}")
            else:
                url = str(self.local_path(url))
            fmt: ListingFormat | None = None
            selectors: Selectors | None = None
            if kind is SourceKind.LISTING:
                fmt_raw = self.get(s, w, "format", str, "html")
                try:
                    fmt = ListingFormat(fmt_raw)
                except ValueError:
                    raise self.fail(f"{w}.format", f"must be 'html' or 'text', got {fmt_raw!r}") from None
                if fmt is ListingFormat.HTML:
                    selectors = self.selectors(s.get("selectors"), f"{w}.selectors")
            elif "format" in s or "selectors" in s:
                raise self.fail(f"{w}.format", "format and selectors apply to kind = 'listing' only")
            record = self.strings(s, w, "record") or DEFAULT_TEXT_RECORD
            bad = [p for p in record if p not in RECORD_PARTS]
            if bad or "date" not in record or len(set(record)) != len(record):
                raise self.fail(
                    f"{w}.record",
                    f"must list each of {sorted(RECORD_PARTS)} at most once and include 'date', got {list(record)!r}",
                )
            theme = self.get(s, w, "theme", str, None)
            out.append(
                Source(
                    name=name,
                    kind=kind,
                    url=url,
                    format=fmt,
                    theme=theme,
                    selectors=selectors,
                    date_format=self.get(s, w, "date_format", str, None),
                    record=record,
                )
            )
        return tuple(out)

    def selectors(self, raw: Any, w: str) -> Selectors:
        if not isinstance(raw, dict) or "item" not in raw:
            raise self.fail(f"{w}.item", "an html listing needs [sources.selectors] with at least item")
        fields = ("item", "title", "link", "date", "summary", "author")
        unknown = sorted(set(raw) - set(fields))
        if unknown:
            raise self.fail(f"{w}.{unknown[0]}", "unknown selector")
        values = {k: self.get(raw, w, k, str, None) for k in fields}
        from lxml.cssselect import CSSSelector, SelectorError  # lxml is slow to import; only here

        for k, v in values.items():
            if v is not None:
                try:
                    CSSSelector(v)
                except SelectorError as exc:
                    raise self.fail(f"{w}.{k}", f"invalid CSS selector {v!r}: {exc}") from exc
        return Selectors(**values)
