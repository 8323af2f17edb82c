"""Subscriber lists (``subscribers/*.csv``) and their management.

This module owns the list files: reading and validating them, the edits the
CLI makes (add, remove, import), and the signed tokens in unsubscribe links.
It does not own subscription status: unsubscribes and bounces live in the
store, and ``active_subscribers`` lets them win over the files.

A list file is UTF-8 CSV with a header row naming ``email,name,themes,timezone``
(only ``email`` is required). ``themes`` is a ``;``-separated subset of the
configured themes, empty for all; ``timezone`` an optional IANA name. Empty
rows and rows whose email starts with ``#`` are skipped. A row that is not
CSV (an unterminated quote: see ``csv_records``), whose cells under a column
named twice disagree, or whose address is invalid (a local part over 64
octets included) is a problem naming file and line; the other rows load. Files are rewritten
atomically (temp file + ``os.replace``), other rows kept byte for byte.

Unsubscribe tokens live in ``digest.tokens`` (re-exported here).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from digest.csv_records import Record, iter_records, split_records
from digest.errors import SubscriberError
from digest.models import Subscriber, SubscriberStatus

# One row's checks live in subscriber_rows; they are part of this module's interface.
from digest.subscriber_rows import MAX_LOCAL_PART, RowParser, email_key, normalise_email, parse_row

__all__ = [
    "COLUMNS",
    "MAX_LOCAL_PART",
    "ImportResult",
    "LoadResult",
    "active_subscribers",
    "add_subscriber",
    "email_key",
    "find_rows",
    "import_file",
    "load_lists",
    "normalise_email",
    "parse_row",
    "remove_subscriber",
]

COLUMNS = ("email", "name", "themes", "timezone")
_HEADER_ALIASES = {
    "email": "email",
    "e-mail": "email",
    "mail": "email",
    "email address": "email",
    "name": "name",
    "full name": "name",
    "themes": "themes",
    "theme": "themes",
    "timezone": "timezone",
    "time zone": "timezone",
    "tz": "timezone",
}


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The valid subscribers of a folder, and one line per skipped row or file."""

    subscribers: tuple[Subscriber, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What ``import_file`` did: how many rows it added, how many addresses
    were already listed (or repeated in the source), and one line per bad row."""

    added: int
    skipped_duplicates: int
    problems: tuple[str, ...]


def load_lists(folder: Path, known_themes: Collection[str] | None) -> LoadResult:
    """Read every ``*.csv`` in ``folder`` (sorted by name); bad rows are reported and skipped.

    Problems read ``"subscribers/main.csv:7: invalid address 'bob@': …"``. An
    address listed twice (compared case-insensitively, across files too)
    is kept where it first appears and reported where it appears again.
    """
    if not folder.is_dir():
        return LoadResult((), (f"{folder}: no such folder",))
    subscribers: list[Subscriber] = []
    problems: list[str] = []
    parser = RowParser(known_themes)
    # Where each address first appears, as line * files + file number: one int each (a million
    # "file:line" strings, or tuples, cost several times more).
    seen: dict[str, int] = {}
    labels: list[str] = []
    paths = sorted(folder.glob("*.csv"))
    files = len(paths) or 1
    for path in paths:
        label = f"{folder.name}/{path.name}"
        try:
            rows = _read_rows(path.read_bytes(), headerless_ok=False)
        except SubscriberError as exc:
            problems.append(f"{label}: {exc}")
            continue
        except OSError as exc:
            problems.append(f"{label}: cannot read: {exc.strerror or exc}")
            continue
        labels.append(label)
        for line, cells, _raw in rows:
            if isinstance(cells, str):
                problems.append(f"{label}:{line}: {cells}")
                continue
            try:
                sub = parser.parse(**cells)
            except SubscriberError as exc:
                problems.append(f"{label}:{line}: {exc}")
                continue
            key = email_key(sub.email)
            first = seen.get(key)
            if first is not None:
                where = f"{labels[first % files]}:{first // files}"
                problems.append(f"{label}:{line}: duplicate address {sub.email!r} (first in {where})")
                continue
            seen[key] = line * files + len(labels) - 1
            subscribers.append(sub)
    return LoadResult(tuple(subscribers), tuple(problems))


def active_subscribers(
    subscribers: Iterable[Subscriber], statuses: Mapping[str, SubscriberStatus]
) -> tuple[Subscriber, ...]:
    """The subscribers to send to: a stored unsubscribe or bounce beats the list file.

    ``statuses`` maps lowercase addresses to their stored status.
    """
    return tuple(
        s
        for s in subscribers
        if s.status is SubscriberStatus.ACTIVE
        and statuses.get(s.email.lower(), SubscriberStatus.ACTIVE) is SubscriberStatus.ACTIVE
    )


def add_subscriber(
    file: Path,
    email: str,
    name: str = "",
    themes: str | Iterable[str] = "",
    timezone: str | None = None,
    *,
    known_themes: Collection[str] | None = None,
) -> Subscriber:
    """Append one subscriber to ``file`` (created with a header if missing).

    Refuses, with ``SubscriberError``, an invalid row or an address already in
    any list file of the same folder.
    """
    sub = parse_row(email, name, themes, timezone, known_themes)
    if sub.email.lower() in _listed(file.parent):
        raise SubscriberError(f"{sub.email} is already subscribed")
    _append(file, [sub])
    return sub


def remove_subscriber(folder: Path, email: str) -> bool:
    """Delete the address's rows from every list file in ``folder``; ``False`` if none had it."""
    try:
        key = normalise_email(email).lower()
    except SubscriberError:
        key = email.strip().lower()
    removed = False
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else ():
        try:
            rewritten = _without(path.read_bytes(), key)
        except SubscriberError as exc:
            raise SubscriberError(f"{folder.name}/{path.name}: {exc}") from exc
        if rewritten is not None:
            _write_atomic(path, rewritten)
            removed = True
    return removed


def import_file(
    src: Path, dest: Path, known_themes: Collection[str] | None, forgotten: Callable[[str], bool] | None = None
) -> ImportResult:
    """Append the valid, new rows of the CSV ``src`` to the list file ``dest``.

    ``src`` may lack a header when its first column holds addresses, and may
    have extra columns (ignored). Addresses already in ``dest``'s folder, or
    earlier in ``src``, are skipped and counted in ``skipped_duplicates``.
    An address ``forgotten`` says was erased on request is refused (a problem).
    """
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise SubscriberError(f"{src}: cannot read: {exc.strerror or exc}") from exc
    listed = _listed(dest.parent)
    added: list[Subscriber] = []
    duplicates = 0
    problems: list[str] = []
    try:
        rows = _read_rows(data, headerless_ok=True)
    except SubscriberError as exc:
        return ImportResult(0, 0, (f"{src}: {exc}",))
    parser = RowParser(known_themes)
    for line, cells, _raw in rows:
        if isinstance(cells, str):
            problems.append(f"{src}:{line}: {cells}")
            continue
        try:
            sub = parser.parse(**cells)
        except SubscriberError as exc:
            problems.append(f"{src}:{line}: {exc}")
            continue
        if forgotten is not None and forgotten(sub.email):
            problems.append(f"{src}:{line}: {sub.email} asked to be forgotten; not imported")
            continue
        if sub.email.lower() in listed:
            duplicates += 1
            continue
        listed.add(sub.email.lower())
        added.append(sub)
    if added:
        _append(dest, added)
    return ImportResult(len(added), duplicates, tuple(problems))


def find_rows(folder: Path, email: str) -> list[tuple[str, int, dict[str, str]]]:
    """Every list row of ``email`` in ``folder``: ``(file name, line, cells)``, valid or not."""
    key = _row_key(email)
    found: list[tuple[str, int, dict[str, str]]] = []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else ():
        try:
            rows = list(_read_rows(path.read_bytes(), headerless_ok=False))
        except SubscriberError as exc:
            raise SubscriberError(f"{folder.name}/{path.name}: {exc}") from exc
        found += [
            (path.name, line, cells)
            for line, cells, _ in rows
            if not isinstance(cells, str) and _row_key(cells["email"]) == key
        ]
    return found


# -- CSV files -----------------------------------------------------------------


def _columns(cells: Sequence[str]) -> list[str]:
    return [_HEADER_ALIASES.get(c.strip().lower(), "") for c in cells]


def _read_rows(data: bytes, *, headerless_ok: bool) -> Iterator[tuple[int, dict[str, str] | str, str]]:
    """``(line, {email, name, themes, timezone}, raw)`` for each data row, read as they are taken.

    A row that cannot be read yields its problem (a string) in place of the
    cells: CSV it cannot parse, or different values in a duplicated column.
    A file that cannot be read at all (not UTF-8, no header row) raises
    ``SubscriberError`` here, before any row is taken.
    """
    header, records = iter_records(data)
    first = next(records, None)
    if first is None:
        return iter(())
    columns = _columns(first.cells)
    if "email" in columns:
        body: Iterator[Record] = records
    elif headerless_ok and first.cells and "@" in first.cells[0]:
        columns = list(COLUMNS)
        body = itertools.chain((Record(first.cells, header, first.line),), records)
    else:
        raise SubscriberError("line 1: the header row must name the columns email,name,themes,timezone")
    return _rows(body, columns)


def _rows(body: Iterator[Record], columns: list[str]) -> Iterator[tuple[int, dict[str, str] | str, str]]:
    named = [c for c in columns if c]
    twice = len(named) != len(set(named))  # a column named twice: its cells may disagree
    exact = tuple(columns) == COLUMNS  # the usual header: a full row maps cell by cell
    for record in body:
        if record.error:
            yield record.line, record.error, record.raw
            continue
        cells = record.cells
        if not "".join(cells).strip():  # every cell blank
            continue
        clash = ""
        if exact and len(cells) == len(COLUMNS):
            row = dict(zip(COLUMNS, cells, strict=True))
        elif not twice:
            row = dict.fromkeys(COLUMNS, "")
            for column, value in zip(columns, cells, strict=False):
                if column:
                    row[column] = value
        else:
            row = dict.fromkeys(COLUMNS, "")
            for column, value in zip(columns, cells, strict=False):
                if not column:
                    continue
                if row[column].strip() and value.strip() and row[column].strip() != value.strip():
                    clash = clash or column  # a column named twice whose cells disagree: which one is meant?
                elif value.strip() or not row[column]:
                    row[column] = value
        if row["email"].strip().startswith("#"):
            continue
        if clash:
            yield record.line, f"duplicated column {clash!r}", record.raw
            continue
        yield record.line, row, record.raw


def _without(data: bytes, key: str) -> bytes | None:
    """The file without the rows for address ``key``; ``None`` when it has none."""
    header, records = split_records(data)
    if not records or "email" not in (columns := _columns(records[0].cells)):
        return None
    at = columns.index("email")
    keep = [r.raw for r in records[1:] if r.error or len(r.cells) <= at or _row_key(r.cells[at]) != key]
    if len(keep) == len(records) - 1:
        return None
    return (header + "".join(keep)).encode("utf-8")


def _row_key(email: str) -> str:
    try:
        return normalise_email(email).lower()
    except SubscriberError:
        return email.strip().lower()


def _listed(folder: Path) -> set[str]:
    """Lowercase addresses present in any list file of ``folder``, valid or not."""
    out: set[str] = set()
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else ():
        try:
            rows = list(_read_rows(path.read_bytes(), headerless_ok=False))
        except SubscriberError as exc:
            raise SubscriberError(f"{folder.name}/{path.name}: {exc}") from exc
        out.update(_row_key(cells["email"]) for _, cells, _ in rows if not isinstance(cells, str))
    return out


def _append(file: Path, subs: Iterable[Subscriber]) -> None:
    existing = file.read_bytes() if file.exists() else b""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if not existing.strip():
        existing = b""
        writer.writerow(COLUMNS)
    elif not existing.endswith((b"\n", b"\r")):
        existing += b"\n"
    for s in subs:
        writer.writerow([s.email, s.name, ";".join(sorted(s.themes)), s.timezone or ""])
    _write_atomic(file, existing + buf.getvalue().encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
