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
from collections.abc import Iterator
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
    lines = _decode(data).splitlines(keepends=True)
    records: list[Record] = []
    start = 0
    while start < len(lines):
        start = _read_from(lines, start, records)
    if records and records[0].error:
        raise SubscriberError(f"line 1: {records[0].error}")
    header = records[0].raw if records else ""
    if header and not header.endswith(("\n", "\r")):
        header += "\n"
    return header, records


def _read_from(lines: list[str], start: int, records: list[Record]) -> int:
    """Append the records from ``lines[start:]`` until one is refused; the index to go on from."""
    consumed: list[str] = []

    def feed() -> Iterator[str]:
        for line in lines[start:]:
            consumed.append(line)
            yield line

    # csv pulls exactly the lines of one record per row, so ``consumed`` then
    # holds that record's raw text: rewriting a file keeps other rows as written.
    reader = csv.reader(feed(), strict=True)
    at = start  # index of the first line of the next record
    try:
        for cells in reader:
            raw = "".join(consumed)
            consumed.clear()
            records.append(Record(tuple(cells), raw, at + 1))
            at = start + reader.line_num
    except csv.Error as exc:
        records.append(Record((), lines[at], at + 1, _csv_problem(str(exc), "".join(consumed))))
        return at + 1
    return len(lines)


def _csv_problem(message: str, raw: str) -> str:
    if message == "unexpected end of data" or raw.count('"') % 2:
        return "unterminated quote"
    return f"not valid CSV: {message}"
