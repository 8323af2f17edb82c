"""The checks of single config values: zones, URLs, paths, addresses, durations, the database URL.

Each ``check_*`` has the ``configspec.Check`` shape ``(reader, where,
value) -> value`` and raises ``ValueError(problem)``; the reader turns the
problem into the one-line ``<file>: <where>: <problem>``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import ipaddress
import re
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.configspec import Reader

#: A day in seconds: the longest timeout that means anything (and fits a socket's timeval).
DAY_S = 86_400.0
SCHEDULE_RE = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)\s+([01]\d|2[0-3]):([0-5]\d)$")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Ten years: longer durations are typos, and timedelta overflows not far above.
_MAX_DURATION = dt.timedelta(days=3660)


def parse_duration(raw: str) -> dt.timedelta:
    """``"90s"``, ``"15m"``, ``"72h"``, ``"7d"``, ``"2w"`` → a positive timedelta; ``ValueError`` otherwise."""
    m = _DURATION_RE.match(raw)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"must be a duration like '90s', '15m', '72h' or '7d', got {raw!r}")
    seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds > _MAX_DURATION.total_seconds():
        raise ValueError(f"must be at most ten years, got {raw!r}")
    return dt.timedelta(seconds=seconds)


def check_duration(r: Reader, where: str, value: str) -> dt.timedelta:
    """A duration like ``"72h"`` (see ``parse_duration``)."""
    return parse_duration(value)


def check_zone(r: Reader, where: str, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)") from None
    return value


def check_single_line(r: Reader, where: str, value: str) -> str:
    """No control characters: these values end up in mail headers and HTTP requests."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"must be one line without control characters, got {value!r}")
    return value


def check_address(r: Reader, where: str, value: str) -> str:
    check_single_line(r, where, value)
    address = parseaddr(value)[1]
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain:
        raise ValueError(f"must be an address like 'Name <digest@example.org>', got {value!r}")
    return value


def check_port(r: Reader, where: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a TCP port (1-65535), got {value}")
    return value


def check_http_url(r: Reader, where: str, value: str) -> str:
    """An http(s) URL with a host and, if given, a valid port."""
    value = value.strip()
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        raise ValueError(f"not a valid URL: {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    if port == 0 or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError(f"not a valid URL: {value!r}")
    # The fetcher and the links tell http(s) URLs by their lower-case scheme.
    return parts.scheme + value[len(parts.scheme) :]


def check_base_url(r: Reader, where: str, value: str) -> str:
    """An http(s) URL that links can be made under: no query, no fragment, no trailing slash."""
    value = check_http_url(r, where, value)
    parts = urlsplit(value)
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(f"must not have a query or fragment (links are made under it), got {value!r}")
    return value.rstrip("/")


def check_cidr(r: Reader, where: str, value: tuple[str, ...]) -> tuple[str, ...]:
    for net in value:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"not an address or CIDR: {net!r}") from None
    return value


def optional_path(r: Reader, where: str, value: str) -> Path | None:
    return r.local_path(value) if value.strip() else None


def check_folder(r: Reader, where: str, value: str) -> Path | None:
    """A path (or ``None`` for ``""``) that names an existing folder: named on purpose, so never silently ignored."""
    path = optional_path(r, where, value)
    if path is not None and not path.is_dir():
        raise ValueError(f"no such folder: {path}")
    return path


def check_readable_file(r: Reader, where: str, value: str) -> Path | None:
    """A path (or ``None`` for ``""``) that names a readable file now, not at the first message."""
    path = optional_path(r, where, value)
    if path is None:
        return None
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    return path


#: (dialect, driver) → the module that must be importable. No driver: SQLAlchemy's default.
_DRIVERS = {
    ("sqlite", ""): "sqlite3",
    ("sqlite", "pysqlite"): "sqlite3",
    ("postgresql", "psycopg"): "psycopg",
    ("postgresql", "psycopg2"): "psycopg2",
    ("postgresql", ""): "psycopg2",
}
_DB_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:\+([A-Za-z0-9_]+))?://")
_USE = "use sqlite:///PATH or postgresql+psycopg://user@host/db"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return re.sub(r"^([^:/]+://[^:/@]*):[^@/]*@", r"\1:***@", url)


def check_database(r: Reader, where: str, value: str) -> str:
    """A database URL we can open: a SQLite file, or PostgreSQL with an installed driver."""
    url = value.strip()
    m = _DB_SCHEME.match(url)
    if m is None:
        raise ValueError(f"must be a database URL like sqlite:///digest.db, got {redact(url)!r}")
    dialect, driver = m.group(1).lower(), (m.group(2) or "").lower()
    module = _DRIVERS.get((dialect, driver))
    if module is None:
        raise ValueError(f"unsupported database {m.group(0)!r}: {_USE}")
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"the driver {module!r} for {m.group(0)!r} is not installed: {_USE}")
    rest = url[m.end() :]
    if dialect == "sqlite":
        path = rest.partition("?")[0]
        if not path.startswith("/") or path in ("/", "/:memory:") or path[1:].startswith("file:"):
            raise ValueError(f"the SQLite database must be a file path (sqlite:///digest.db), got {url!r}")
        return f"{m.group(0)}/{r.local_path(path[1:])}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise ValueError(f"not a valid database URL: {redact(url)!r}") from None
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"names no host: {redact(url)!r}")
    return url
