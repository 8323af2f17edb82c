"""The store's side of web sign-ups (limits, tokens, purge, consents, themes, erasure); [subscribe] keys."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from digest import tokens
from digest.config import load_config
from digest.errors import ConfigError, SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.store import Consent, RateLimits, Store, token_hash

T0 = dt.datetime(2018, 1, 16, 10, tzinfo=dt.UTC)
TTL = dt.timedelta(hours=48)


@pytest.fixture
def store(any_store: Store) -> Store:
    """Each test on SQLite and on PostgreSQL."""
    return any_store


def start(store: Store, email: str, at: dt.datetime, token: str) -> str:
    return store.start_confirmation(email, "Ann", ["AI"], token_hash(token), at, TTL)


def test_rate_limits_count_per_address_in_the_store(store: Store) -> None:
    assert start(store, "Ann@Example.org", T0, "t1") == "send"
    assert start(store, "ann@example.org", T0 + dt.timedelta(minutes=9), "t2") == "limited"
    assert start(store, "bob@example.org", T0 + dt.timedelta(minutes=9), "t3") == "send"  # another address
    assert start(store, "ann@example.org", T0 + dt.timedelta(minutes=10, seconds=1), "t4") == "send"
    assert start(store, "ann@example.org", T0 + dt.timedelta(minutes=21), "t5") == "send"
    assert start(store, "ann@example.org", T0 + dt.timedelta(minutes=40), "t6") == "limited"
    assert start(store, "ann@example.org", T0 + dt.timedelta(hours=24, seconds=1), "t7") == "send"
    loose = RateLimits(burst=5, daily=100)
    assert store.start_confirmation("c@example.org", "", [], token_hash("c1"), T0, TTL, loose) == "send"
    assert store.start_confirmation("c@example.org", "", [], token_hash("c2"), T0, TTL, loose) == "send"
    person = store.web_subscriber("ANN@example.org")
    assert person is not None and person.address == "ann@example.org" and person.status == "pending"
    assert person.created_at == T0  # kept across requests


def test_tokens_are_stored_hashed_expire_and_are_used_once(store: Store) -> None:
    start(store, "ann@example.org", T0, "secret-token-1")
    with store._read() as conn:
        stored = conn.exec_driver_sql("SELECT token_hash FROM confirm_tokens").scalars().all()
    assert stored == [token_hash("secret-token-1")] and "secret-token-1" not in stored[0]
    assert store.pending_for_token(token_hash("secret-token-1"), T0 + TTL - dt.timedelta(seconds=1)) is not None
    assert store.pending_for_token(token_hash("secret-token-1"), T0 + TTL) is None  # expired
    assert store.confirm(token_hash("secret-token-1"), T0 + TTL) is None
    assert store.confirm(token_hash("wrong"), T0) is None
    person = store.confirm(token_hash("secret-token-1"), T0 + dt.timedelta(hours=1))
    assert person is not None and person.status == "active" and person.themes == frozenset({"AI"})
    assert store.confirm(token_hash("secret-token-1"), T0 + dt.timedelta(hours=1)) is None  # used
    assert store.decline(token_hash("secret-token-1"), T0) is False


def test_purge_erases_only_old_pending_sign_ups(store: Store) -> None:
    start(store, "old@example.org", T0, "a")
    start(store, "kept@example.org", T0, "b")
    store.confirm(token_hash("b"), T0)
    start(store, "fresh@example.org", T0 + dt.timedelta(days=6), "c")
    assert store.purge_unconfirmed(T0 + dt.timedelta(days=1)) == 1
    assert {w.email for w in store.web_subscribers()} == {"kept@example.org", "fresh@example.org"}


def test_join_lists_a_row_wins_choices_apply_and_pending_is_left_out(store: Store) -> None:
    start(store, "Web@Example.org", T0, "w")
    store.confirm(token_hash("w"), T0)
    start(store, "both@example.org", T0, "b")
    store.confirm(token_hash("b"), T0)
    start(store, "pending@example.org", T0, "p")
    store.set_theme_choice("LIST@example.org", ["Cyber"], T0)
    listed = (Subscriber("list@example.org", "L", frozenset({"AI"})), Subscriber("Both@example.org", "Row name"))
    joined = store.join_lists(listed)
    assert [(s.email, s.name, s.themes) for s in joined] == [
        ("list@example.org", "L", frozenset({"Cyber"})),
        ("Both@example.org", "Row name", frozenset()),
        ("Web@Example.org", "Ann", frozenset({"AI"})),
    ]


def test_leaving_appends_a_consent_record_and_unknown_kinds_are_refused(store: Store) -> None:
    store.set_status("a@example.org", SubscriberStatus.UNSUBSCRIBED, T0, "one-click")
    store.set_status("a@example.org", SubscriberStatus.UNSUBSCRIBED, T0, "one-click")  # no change: no record
    store.set_status("b@example.org", SubscriberStatus.BOUNCED, T0, "bounce")
    store.set_status("b@example.org", SubscriberStatus.COMPLAINED, T0, "complaint", force=True)
    assert [(c.kind, c.detail) for c in store.consents("a@example.org")] == [("unsubscribe", '{"how": "one-click"}')]
    assert [c.kind for c in store.consents("b@example.org")] == ["complaint"]
    with pytest.raises(ValueError, match="consent kind"):
        store.add_consent(Consent("a@example.org", "drop table", T0))


def test_forget_keeps_only_a_salted_hash(store: Store, tmp_path: Path) -> None:
    assert store.forgotten_check()("a@example.org") is False  # nothing forgotten: no salt needed
    start(store, "a@example.org", T0, "x")
    counts = store.forget("A@example.org", T0)
    assert counts["web_subscribers"] == 1 and counts["confirm_tokens"] == 1
    assert store.forgotten_check()("a@EXAMPLE.org") and not store.forgotten_check()("b@example.org")
    with store._read() as conn:
        (salt,) = conn.exec_driver_sql("SELECT value FROM store_keys").scalars().all()
        (digest,) = conn.exec_driver_sql("SELECT hash FROM forgotten").scalars().all()
    import hashlib

    assert digest != hashlib.sha256(b"a@example.org").hexdigest() and len(salt) == 64
    # Their own new sign-up, once confirmed, lifts it.
    start(store, "a@example.org", T0 + dt.timedelta(hours=1), "y")
    store.confirm(token_hash("y"), T0 + dt.timedelta(hours=1))
    assert store.forgotten_check()("a@example.org") is False


def test_preferences_tokens_have_their_own_key_label() -> None:
    unsub = tokens.make_token("s3cret", "a@example.org", "list")
    prefs = tokens.make_token("s3cret", "a@example.org", "list", tokens.PREFERENCES)
    assert unsub != prefs
    assert tokens.verify_token("s3cret", prefs, "list", tokens.PREFERENCES) == "a@example.org"
    with pytest.raises(SubscriberError):
        tokens.verify_token("s3cret", unsub, "list", tokens.PREFERENCES)
    with pytest.raises(SubscriberError):
        tokens.verify_token("s3cret", prefs, "list")
    with pytest.raises(ValueError):
        tokens.make_token("s3cret", "a@example.org", "list", "other")
    assert tokens.preferences_url("https://x.example/", prefs) == f"https://x.example/p/{prefs}"


def test_subscribe_config_defaults_and_hostile_values(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text("")
    s = load_config(path).subscribe
    assert (s.enabled, s.confirm_ttl, s.purge_unconfirmed_after, s.record_ip, s.themes_selectable) == (
        False,
        dt.timedelta(hours=48),
        dt.timedelta(days=7),
        False,
        True,
    )
    path.write_text(
        '[subscribe]\nenabled = true\nconfirm_ttl = "2h"\nconsent_text = "Yes  please."\nrecord_ip = true\n'
    )
    s = load_config(path).subscribe
    assert s.enabled and s.confirm_ttl == dt.timedelta(hours=2) and s.consent_text == "Yes  please." and s.record_ip
    for bad, key in (
        ('enabled = "yes"', "subscribe.enabled"),
        ('confirm_ttl = "forever"', "subscribe.confirm_ttl"),
        ('purge_unconfirmed_after = "-1d"', "subscribe.purge_unconfirmed_after"),
        ('consent_text = "   "', "subscribe.consent_text"),
        (f'consent_text = "{"x" * 2001}"', "subscribe.consent_text"),
        ("record_ip = 1", "subscribe.record_ip"),
        ("themes_selectable = []", "subscribe.themes_selectable"),
        ("colour = 'red'", "subscribe.colour"),
    ):
        path.write_text(f"[subscribe]\n{bad}\n")
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(path)
