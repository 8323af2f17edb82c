"""Store: database failures become one-line StoreErrors that name the database."""

from __future__ import annotations

import datetime as dt
import socket
import sqlite3
from pathlib import Path

import pytest

from digest.errors import StoreError
from digest.models import SubscriberStatus
from digest.store import Store

NOW = dt.datetime(2018, 1, 15, tzinfo=dt.UTC)


def one_line(err: pytest.ExceptionInfo[StoreError]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_locked_database_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "digest.db"
    with Store.open(f"sqlite:///{path}", busy_timeout=0.2) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process is writing
            with pytest.raises(StoreError) as err:
                store.set_status("a@x.org", SubscriberStatus.ACTIVE, NOW, "cli")
            assert one_line(err) == f"database {path} is locked by another process (waited 0.2 s)"
            assert isinstance(err.value.__cause__, Exception)
            # Readers are not blocked by a writer (WAL).
            assert store.subscriber_status() == {}
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.set_status("a@x.org", SubscriberStatus.ACTIVE, NOW, "cli") is True


def test_corrupt_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "digest.db"
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(StoreError) as err:
        Store.open(f"sqlite:///{path}")
    assert one_line(err).startswith(f"database {path} is corrupt or not a SQLite database")


def test_unreachable_postgres_is_reported() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg://digest:s3cret@127.0.0.1:{port}/digest"
    with pytest.raises(StoreError) as err:
        Store.open(url)
    message = one_line(err)
    assert message.startswith(f"cannot connect to database postgresql+psycopg://digest:***@127.0.0.1:{port}")
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "not a database URL"),
        ("mysql://u@127.0.0.1/db", "unsupported database"),
        ("sqlite://", "must be a file path"),
        ("sqlite:///:memory:", "must be a file path"),
    ],
)
def test_unusable_urls_are_refused(url: str, expected: str) -> None:
    with pytest.raises(StoreError, match=expected):
        Store.open(url)


def test_missing_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deep" / "digest.db"
    with Store.open(f"sqlite:///{path}") as store:
        assert store.entry_count() == 0
    assert path.is_file()


def test_unwritable_location_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder of database"):
        Store.open(f"sqlite:///{blocker / 'sub' / 'digest.db'}")


def test_reopening_needs_no_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "digest.db"
    Store.open(f"sqlite:///{path}").close()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with Store.open(f"sqlite:///{path}", busy_timeout=0.2) as store:
            assert store.entry_count() == 0
    finally:
        other.execute("ROLLBACK")
        other.close()
