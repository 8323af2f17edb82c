"""CSV files read record by record, each with its raw text and line, a broken record reported and skipped.

The subscriber lists are edited by hand, so one stray quote must not cost the
rows after it: Python's ``csv`` module, given an unterminated quote, reads
every later line into one cell. ``split_records`` reads strictly and, when a
record is refused, reports it on the line it starts on and goes on from the
next line. The raw text of every record is kept, so that a file rewritten
without one row keeps every other row, broken ones included, as written.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from digest.errors import SubscriberError


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubscriberError(f"not UTF-8 text (byte {exc.start})") from None


@dataclass(frozen=True, slots=True)
class Record:
    """One CSV record: its cells, its raw text (kept as written on rewrite), the line it starts on.

    ``error`` is set (and ``cells`` empty) for a record the CSV reader refused.
    """

    cells: tuple[str, ...]
    raw: str
    line: int
    error: str = ""


def split_records(data: bytes) -> tuple[str, list[Record]]:
    """The raw header text, and every record after it (the header is ``records[0]``).

    Raises ``SubscriberError`` for a file that is not UTF-8 or a header row
    that is not CSV. A later record that is not valid CSV (an unterminated
    quote, text after a closing quote) becomes an error record for the line
    it starts on, and reading goes on at the next line: an open quote would
    otherwise swallow every row after it into one cell.
    """
    header, records = iter_records(data)
    return header, list(records)


def iter_records(data: bytes) -> tuple[str, Iterator[Record]]:
    """``split_records`` with the records read as they are taken (the header is the first one).

    The file is decoded and its header row read at once, so both errors of
    ``split_records`` are raised by this call, before any record is taken:
    a list of a million rows is read without holding a million records.
    """
    lines = _decode(data).splitlines(keepends=True)
    records = _records(lines)
    first = next(records, None)
    if first is None:
        return "", iter(())
    if first.error:
        raise SubscriberError(f"line 1: {first.error}")
    header = first.raw if first.raw.endswith(("\n", "\r")) else first.raw + "\n"
    return header, itertools.chain((first,), records)


def _records(lines: list[str]) -> Iterator[Record]:
    start = 0
    while start < len(lines):
        start = yield from _read_from(lines, start)


def _read_from(lines: list[str], start: int) -> Generator[Record, None, int]:
    """Yield the records from ``lines[start:]`` until one is refused; return the index to go on from."""
    # csv counts the lines it pulls (``line_num``), so a record's raw text is the lines
    # it pulled for that row: rewriting a file keeps other rows as written.
    reader = csv.reader(itertools.islice(lines, start, None), strict=True)
    at = start  # index of the first line of the next record
    try:
        for cells in reader:
            end = start + reader.line_num
            raw = lines[at] if end == at + 1 else "".join(lines[at:end])
            yield Record(tuple(cells), raw, at + 1)
            at = end
    except csv.Error as exc:
        consumed = "".join(lines[at : start + reader.line_num])
        yield Record((), lines[at], at + 1, _csv_problem(str(exc), consumed))
        return at + 1
    return len(lines)


def _csv_problem(message: str, raw: str) -> str:
    if message == "unexpected end of data" or raw.count('"') % 2:
        return "unterminated quote"
    return f"not valid CSV: {message}"
