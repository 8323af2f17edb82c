"""Unsubscribe tokens: deterministic, opaque, refused when tampered with."""

from __future__ import annotations

import base64

import pytest

from digest.errors import ConfigError, SubscriberError
from digest.tokens import make_token, unsubscribe_url, verify_token


def test_token_round_trip_and_determinism() -> None:
    token = make_token("s3cret", "Bob+Tag@example.org", "cyber-weekly.example.org")
    assert verify_token("s3cret", token, "cyber-weekly.example.org") == "Bob+Tag@example.org"
    assert token == make_token("s3cret", "Bob+Tag@example.org", "cyber-weekly.example.org")
    assert token != make_token("s3cret", "Bob+Tag@example.org", "other.example.org")
    assert token != make_token("other", "Bob+Tag@example.org", "cyber-weekly.example.org")
    assert "=" not in token and "+" not in token and "/" not in token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"Bob" not in raw and b"example" not in raw and b"Bob" not in token.encode()


def test_token_refuses_tampering() -> None:
    token = make_token("s3cret", "bob@example.org", "list")
    with pytest.raises(SubscriberError):
        verify_token("wrong", token, "list")
    with pytest.raises(SubscriberError):
        verify_token("s3cret", token, "other-list")
    for i in range(len(token)):
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(SubscriberError):
            verify_token("s3cret", flipped, "list")
    for bad in ("", "short", token + "AA", token[:-4], "!" * 40):
        with pytest.raises(SubscriberError):
            verify_token("s3cret", bad, "list")


def test_token_needs_a_secret() -> None:
    with pytest.raises(ConfigError):
        make_token("", "bob@example.org", "list")


def test_unsubscribe_url() -> None:
    assert unsubscribe_url("https://example.org/", "TOKEN") == "https://example.org/u/TOKEN"
    assert unsubscribe_url("http://127.0.0.1:8025", "abc") == "http://127.0.0.1:8025/u/abc"
