"""Shared fixtures. Real servers live in ``tests/fixtures/`` as plugins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.http_server",
    "tests.fixtures.smtp_server",
    "tests.fixtures.store",
    "tests.fixtures.browser",
    "tests.fixtures.imap_server",
]

DATA = Path(__file__).parent / "data"
SAMPLE_LISTING = DATA / "listings" / "china-us-focus-cyber.txt"


@pytest.fixture(autouse=True)
def _clean_digest_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No DIGEST_* variable of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("DIGEST_"):
            monkeypatch.delenv(key)
    yield


@pytest.fixture
def data_dir() -> Path:
    return DATA
