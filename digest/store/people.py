"""The store's side of people who join on the web: sign-ups, confirmations, consents, themes, erasure.

A web sign-up is a ``web_subscribers`` row, ``pending`` until its owner
confirms and ``active`` after. Confirmation links carry a random token of
which only the SHA-256 is stored; the token rows are also the send log the
rate limits count. Consent records are append-only. ``theme_choices`` holds
the themes chosen on the preferences page for anyone, list subscribers
included (no list file is changed). ``forget`` erases an address from every
table and keeps only a salted hash of it in ``forgotten``, which
``join_lists`` and the list import consult.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from digest.models import Subscriber
from digest.store.base import StoreBase, upsert_into
from digest.store.schema import bounce_events as t_bounces
from digest.store.schema import confirm_tokens as t_tokens
from digest.store.schema import consents as t_consents
from digest.store.schema import deliveries as t_deliveries
from digest.store.schema import forgotten as t_forgotten
from digest.store.schema import store_keys as t_keys
from digest.store.schema import subscriber_status as t_status
from digest.store.schema import theme_choices as t_choices
from digest.store.schema import verp_tags as t_tags
from digest.store.schema import web_subscribers as t_web
from digest.store.subscribers import normalise

PENDING = "pending"
ACTIVE = "active"
#: The kinds of consent record.
CONSENT_KINDS = ("subscribe", "confirm", "preferences", "unsubscribe", "complaint")
_SALT_KEY = "forget_salt"


@dataclass(frozen=True, slots=True)
class WebSubscriber:
    """One web sign-up: ``email`` is the lowercased key, ``address`` as it was typed."""

    email: str
    address: str
    name: str
    themes: frozenset[str]
    status: str
    created_at: dt.datetime
    confirmed_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Consent:
    """One consent record. ``text_sha256`` is of the consent text shown ("" when none was)."""

    email: str
    kind: str
    at: dt.datetime
    text_sha256: str = ""
    detail: str = ""
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Confirmation mails per address: at most ``burst`` per ``burst_window``, ``daily`` per day."""

    burst: int = 1
    burst_window: dt.timedelta = dt.timedelta(minutes=10)
    daily: int = 3


def token_hash(token: str) -> str:
    """What is stored of a confirmation token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _web(r: Row[Any]) -> WebSubscriber:
    return WebSubscriber(
        email=r.email,
        address=r.address,
        name=r.name,
        themes=frozenset(json.loads(r.themes)),
        status=r.status,
        created_at=r.created_at,
        confirmed_at=r.confirmed_at,
    )


def _themes_json(themes: Iterable[str]) -> str:
    return json.dumps(sorted(set(themes)), ensure_ascii=False)


class PeopleMixin(StoreBase):
    """Web sign-ups, confirmation tokens, consent records, theme choices, forgotten addresses."""

    # -- sign-up and confirmation -------------------------------------------------
    def start_confirmation(
        self,
        address: str,
        name: str,
        themes: Iterable[str],
        hashed: str,
        now: dt.datetime,
        ttl: dt.timedelta,
        limits: RateLimits = RateLimits(),
    ) -> str:
        """Record a sign-up request and its token: ``"send"``, or ``"limited"`` when a rate limit is reached.

        A limited request records nothing. Otherwise the row is created (or
        set back to pending, with the new name and themes) and the token
        stored. The caller has already left out addresses that are subscribed.
        """
        key = normalise(address)
        c = t_tokens.c
        with self._write() as conn:
            current = conn.execute(select(t_web.c.status).where(t_web.c.email == key)).scalar()

            def sent_since(when: dt.datetime) -> int:
                q = select(func.count()).select_from(t_tokens).where(c.email == key, c.sent_at > when)
                return int(conn.execute(q).scalar() or 0)

            if sent_since(now - limits.burst_window) >= limits.burst or sent_since(now - dt.timedelta(days=1)) >= (
                limits.daily
            ):
                return "limited"
            values = {"address": address.strip(), "name": name, "themes": _themes_json(themes), "status": PENDING}
            if current is None:
                conn.execute(insert(t_web).values(email=key, created_at=now, **values))
            else:
                conn.execute(update(t_web).where(t_web.c.email == key).values(**values))
            conn.execute(insert(t_tokens).values(token_hash=hashed, email=key, sent_at=now, expires_at=now + ttl))
        return "send"

    def drop_token(self, hashed: str) -> None:
        """Forget a token whose mail could not be sent (it then counts against no limit)."""
        with self._write() as conn:
            conn.execute(delete(t_tokens).where(t_tokens.c.token_hash == hashed))

    def pending_for_token(self, hashed: str, now: dt.datetime) -> WebSubscriber | None:
        """The sign-up an unused, unexpired token belongs to; changes nothing."""
        with self._read() as conn:
            return self._by_token(conn, hashed, now)

    def _by_token(self, conn: Connection, hashed: str, now: dt.datetime) -> WebSubscriber | None:
        c = t_tokens.c
        email = conn.execute(
            select(c.email).where(c.token_hash == hashed, c.used.is_(False), c.expires_at > now)
        ).scalar()
        if email is None:
            return None
        row = conn.execute(select(t_web).where(t_web.c.email == email)).first()
        return None if row is None or row.status != PENDING else _web(row)

    def confirm(self, hashed: str, now: dt.datetime) -> WebSubscriber | None:
        """Make the token's sign-up active (every token of the address is used up); None if invalid."""
        with self._write() as conn:
            person = self._by_token(conn, hashed, now)
            if person is None:
                return None
            conn.execute(update(t_tokens).where(t_tokens.c.email == person.email).values(used=True))
            conn.execute(update(t_web).where(t_web.c.email == person.email).values(status=ACTIVE, confirmed_at=now))
            # Confirming again after leaving is a new, explicit consent.
            conn.execute(delete(t_status).where(t_status.c.email == person.email))
            salt = self._salt(conn, create=False)
            if salt is not None:
                conn.execute(delete(t_forgotten).where(t_forgotten.c.hash == _hash(salt, person.email)))
        return replace(person, status=ACTIVE, confirmed_at=now)

    def decline(self, hashed: str, now: dt.datetime) -> bool:
        """ "No thanks": erase the pending sign-up of a valid token and its tokens."""
        with self._write() as conn:
            person = self._by_token(conn, hashed, now)
            if person is None:
                return False
            conn.execute(delete(t_web).where(t_web.c.email == person.email))
            conn.execute(delete(t_tokens).where(t_tokens.c.email == person.email))
            conn.execute(delete(t_consents).where(t_consents.c.email == person.email, t_consents.c.kind == "subscribe"))
        return True

    def purge_unconfirmed(self, before: dt.datetime) -> int:
        """Erase sign-ups still pending that were made before ``before``; how many."""
        with self._write() as conn:
            emails = list(
                conn.execute(
                    select(t_web.c.email).where(t_web.c.status == PENDING, t_web.c.created_at < before)
                ).scalars()
            )
            for email in emails:
                conn.execute(delete(t_web).where(t_web.c.email == email))
                conn.execute(delete(t_consents).where(t_consents.c.email == email, t_consents.c.kind == "subscribe"))
            # The send log behind the daily limit is kept for a day at least.
            conn.execute(delete(t_tokens).where(t_tokens.c.sent_at < before - dt.timedelta(days=1)))
        return len(emails)

    def web_subscribers(self) -> list[WebSubscriber]:
        """Every web sign-up, oldest first."""
        with self._read() as conn:
            rows = conn.execute(select(t_web).order_by(t_web.c.created_at, t_web.c.email))
            return [_web(r) for r in rows]

    def web_subscriber(self, email: str) -> WebSubscriber | None:
        with self._read() as conn:
            row = conn.execute(select(t_web).where(t_web.c.email == normalise(email))).first()
        return None if row is None else _web(row)

    # -- consents and themes ----------------------------------------------------------
    def add_consent(self, consent: Consent) -> None:
        """Append one consent record."""
        if consent.kind not in CONSENT_KINDS:
            raise ValueError(f"unknown consent kind {consent.kind!r}")
        with self._write() as conn:
            conn.execute(
                insert(t_consents).values(
                    email=normalise(consent.email),
                    kind=consent.kind,
                    at=consent.at,
                    text_sha256=consent.text_sha256,
                    detail=consent.detail,
                    ip=consent.ip,
                )
            )

    def consents(self, email: str) -> list[Consent]:
        """The consent records of ``email``, oldest first."""
        c = t_consents.c
        with self._read() as conn:
            rows = conn.execute(select(t_consents).where(c.email == normalise(email)).order_by(c.at, c.id))
            return [Consent(r.email, r.kind, r.at, r.text_sha256, r.detail, r.ip) for r in rows]

    def set_theme_choice(self, email: str, themes: Iterable[str], now: dt.datetime) -> None:
        """The themes ``email`` chose (empty: every theme); the next issue's audience uses them."""
        with self._write() as conn:
            stmt = upsert_into(conn, t_choices).values(
                email=normalise(email), themes=_themes_json(themes), changed_at=now
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[t_choices.c.email], set_={"themes": stmt.excluded.themes, "changed_at": now}
                )
            )

    def theme_choice(self, email: str) -> frozenset[str] | None:
        with self._read() as conn:
            raw = conn.execute(select(t_choices.c.themes).where(t_choices.c.email == normalise(email))).scalar()
        return None if raw is None else frozenset(json.loads(raw))

    def join_lists(self, listed: Sequence[Subscriber]) -> tuple[Subscriber, ...]:
        """The list subscribers and the confirmed web ones, as one audience.

        A list row wins for its address (its name, its time zone); a theme
        choice made on the preferences page wins over both; forgotten
        addresses are left out. Statuses (unsubscribes) are applied after, by
        ``subscribers.active_subscribers``.
        """
        with self._read() as conn:
            web = [
                _web(r)
                for r in conn.execute(select(t_web).where(t_web.c.status == ACTIVE).order_by(t_web.c.created_at))
            ]
            choices = {
                e: frozenset(json.loads(t)) for e, t in conn.execute(select(t_choices.c.email, t_choices.c.themes))
            }
            is_forgotten = self._forgotten_check(conn)
        out: list[Subscriber] = []
        seen: set[str] = set()
        for sub in listed:
            key = sub.email.lower()
            if is_forgotten(key):
                continue
            seen.add(key)
            out.append(replace(sub, themes=choices[key]) if key in choices else sub)
        for w in web:
            if w.email not in seen:
                out.append(Subscriber(email=w.address, name=w.name, themes=choices.get(w.email, w.themes)))
        return tuple(out)

    # -- erasure ----------------------------------------------------------------------
    def forgotten_check(self) -> Callable[[str], bool]:
        """A test of whether an address was forgotten (for list imports)."""
        with self._read() as conn:
            return self._forgotten_check(conn)

    def _forgotten_check(self, conn: Connection) -> Callable[[str], bool]:
        salt = self._salt(conn, create=False)
        hashes = set(conn.execute(select(t_forgotten.c.hash)).scalars()) if salt is not None else set()
        if not hashes or salt is None:
            return lambda email: False
        return lambda email: _hash(salt, normalise(email)) in hashes

    def forget(self, email: str, now: dt.datetime) -> dict[str, int]:
        """Erase ``email`` from every table; keep its salted hash. Returns rows changed per table."""
        key = normalise(email)
        counts: dict[str, int] = {}
        with self._write() as conn:
            digest = _hash(self._made_salt(conn), key)
            for name, table in (
                ("web_subscribers", t_web),
                ("confirm_tokens", t_tokens),
                ("consents", t_consents),
                ("theme_choices", t_choices),
                ("subscriber_status", t_status),
                ("bounce_events", t_bounces),
                ("verp_tags", t_tags),
            ):
                counts[name] = conn.execute(delete(table).where(table.c.email == key)).rowcount or 0
            # Ledger rows stay (issue counts must still add up) under a pseudonym, not the address.
            counts["deliveries"] = (
                conn.execute(
                    update(t_deliveries)
                    .where(func.lower(t_deliveries.c.email) == key)
                    .values(email=f"forgotten:{digest[:32]}", last_error=None)
                ).rowcount
                or 0
            )
            stmt = upsert_into(conn, t_forgotten).values(hash=digest, forgotten_at=now)
            conn.execute(stmt.on_conflict_do_nothing(index_elements=[t_forgotten.c.hash]))
        return counts

    def _salt(self, conn: Connection, *, create: bool) -> bytes | None:
        """The salt of ``forgotten`` (random, made at the first ``forget``)."""
        raw = conn.execute(select(t_keys.c.value).where(t_keys.c.name == _SALT_KEY)).scalar()
        if raw is None and create:
            raw = secrets.token_hex(32)
            conn.execute(insert(t_keys).values(name=_SALT_KEY, value=raw))
        return None if raw is None else bytes.fromhex(raw)

    def _made_salt(self, conn: Connection) -> bytes:
        salt = self._salt(conn, create=True)
        assert salt is not None  # just made
        return salt


def _hash(salt: bytes, key: str) -> str:
    return hmac.new(salt, key.encode("utf-8"), hashlib.sha256).hexdigest()
