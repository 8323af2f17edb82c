"""CSV records with their raw text and line: read whole (``split_records``) or as taken (``iter_records``)."""

from __future__ import annotations

import pytest

from digest.csv_records import Record, iter_records, split_records
from digest.errors import SubscriberError

TEXT = (
    "\ufeffemail,name\r\n"
    "a@x.org,Ann\r\n"
    'b@x.org,"Bob\non two lines"\r\n'
    'c@x.org,"Cy"d\n'  # text after a closing quote
    "d@x.org,Di\n"
    'e@x.org,"Ed\n'  # an open quote: only this line is lost
    "f@x.org,Flo"
)


def test_records_keep_their_raw_text_and_line_and_a_broken_one_costs_only_its_line() -> None:
    header, records = split_records(TEXT.encode("utf-8"))
    assert header == "email,name\r\n"
    assert [(r.line, r.cells) for r in records if not r.error] == [
        (1, ("email", "name")),
        (2, ("a@x.org", "Ann")),
        (3, ("b@x.org", "Bob\non two lines")),
        (6, ("d@x.org", "Di")),
        (8, ("f@x.org", "Flo")),
    ]
    assert [(r.line, r.error) for r in records if r.error] == [
        (5, "not valid CSV: ',' expected after '\"'"),
        (7, "unterminated quote"),
    ]
    # Every line is in exactly one record, as written: a rewrite keeps the others byte for byte.
    assert "".join(r.raw for r in records) == TEXT.removeprefix("\ufeff")
    assert records[2].raw == 'b@x.org,"Bob\non two lines"\r\n'


def test_iter_records_gives_the_same_records_as_they_are_taken() -> None:
    data = TEXT.encode("utf-8")
    header, taken = iter_records(data)
    assert header == split_records(data)[0]
    assert next(taken) == Record(("email", "name"), "email,name\r\n", 1)
    assert [Record(("email", "name"), "email,name\r\n", 1), *taken] == split_records(data)[1]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"email,name\n\xff\xfe,bad\n", "not UTF-8 text (byte 11)"),
        (b'"email,name\na@x.org,Ann\n', "line 1: unterminated quote"),
    ],
)
def test_a_file_that_cannot_be_read_fails_before_any_record_is_taken(data: bytes, problem: str) -> None:
    with pytest.raises(SubscriberError, match="^" + problem.replace("(", r"\(").replace(")", r"\)") + "$"):
        iter_records(data)
    with pytest.raises(SubscriberError):
        split_records(data)


def test_an_empty_file_has_no_header_and_no_records() -> None:
    assert split_records(b"") == ("", [])
    header, taken = iter_records(b"")
    assert header == "" and list(taken) == []
    assert split_records(b"email") == ("email\n", [Record(("email",), "email", 1)])
