"""Double opt-in and preferences: what ``LocalBackend`` does for ``/subscribe``, ``/confirm`` and ``/p``.

Every call reads the config afresh and takes the time from the backend's
injectable clock (``now``), so tests control token expiry and rate limits.
The POST that asks for a confirmation sends it through ``[sender]`` before
it returns. Answers never depend on whether an address is new, pending or
already subscribed: only the mail that is (or is not) sent does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Sequence

from digest import pipeline, subscribers, tokens
from digest.config import Config
from digest.errors import SendError, SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.send import make_sender
from digest.signup import mail
from digest.store import Consent, Store, token_hash
from digest.web.subscribe import Preferences, SubscribeForm

log = logging.getLogger(__name__)

#: Longest name the form takes (the mail's To header cuts at 300 anyway).
MAX_NAME = 200
_LEAVING = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.COMPLAINED, SubscriberStatus.BOUNCED)


def consent_hash(text: str) -> str:
    """The SHA-256 of the consent text, as consent records keep it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SignupMixin:
    """The sign-up and preferences side of ``LocalBackend`` (which provides these attributes)."""

    now: Callable[[], dt.datetime]
    strict_tokens: bool

    def config(self) -> Config:
        raise NotImplementedError

    def _archived(self, config: Config) -> list[tuple[str, dt.datetime]]:
        raise NotImplementedError

    # -- the form -------------------------------------------------------------------
    def subscribe_enabled(self) -> bool:
        return self.config().subscribe.enabled

    def subscribe_form(self) -> SubscribeForm:
        config = self.config()
        s = config.subscribe
        themes = tuple(t.name for t in config.themes) if s.themes_selectable else ()
        return SubscribeForm(config.digest.title, themes, s.consent_text)

    def subscribe(self, email: str, name: str, themes: Sequence[str], ip: str | None) -> None:
        """Ask ``email`` to confirm, unless subscribed already or rate-limited; ``SubscriberError`` for bad input."""
        config = self.config()
        s = config.subscribe
        now = self.now()
        sub = self._valid_row(config, email, name, themes if s.themes_selectable else ())
        token = secrets.token_urlsafe(16)  # 128 random bits
        hashed = token_hash(token)
        with pipeline.open_store(config) as store:
            store.purge_unconfirmed(now - s.purge_unconfirmed_after)
            if self._subscribed(config, store, sub.email):
                return  # the same answer; no mail, so the form cannot be used to pester a subscriber
            if store.start_confirmation(sub.email, sub.name, sub.themes, hashed, now, s.confirm_ttl) != "send":
                return
            detail = json.dumps({"themes": sorted(sub.themes)}, ensure_ascii=False)
            store.add_consent(
                Consent(sub.email, "subscribe", now, consent_hash(s.consent_text), detail, ip if s.record_ip else None)
            )
            msg = mail.confirmation(
                from_=config.sender.from_,
                site=config.digest.title,
                to_addr=sub.email,
                to_name=sub.name,
                consent_text=s.consent_text,
                confirm_url=f"{config.digest.base_url.rstrip('/')}/confirm/{token}",
                ttl=s.confirm_ttl,
                now=now,
            )
            try:
                mail.deliver(make_sender(config.sender), msg, self.now)
            except SendError:
                store.drop_token(hashed)  # not sent: it must not count against the limits
                raise

    def _valid_row(self, config: Config, email: str, name: str, themes: Sequence[str]) -> Subscriber:
        if len(name) > MAX_NAME:
            raise SubscriberError(f"the name is longer than {MAX_NAME} characters")
        known = [t.name for t in config.themes]
        if themes and not known:
            raise SubscriberError("this digest has no themes to choose from")
        return subscribers.parse_row(email, name, [t for t in themes if t.strip()], None, known or None)

    @staticmethod
    def _subscribed(config: Config, store: Store, email: str) -> bool:
        """Whether ``email`` gets issues now (on a list or confirmed on the web, and not left)."""
        status = store.subscriber_status([email]).get(email.lower())
        if status in _LEAVING:
            return False
        loaded = subscribers.load_lists(config.subscribers_dir, None)
        return any(s.email.lower() == email.lower() for s in store.join_lists(loaded.subscribers))

    # -- confirmation -----------------------------------------------------------------
    def confirmation(self, token: str) -> str | None:
        """The address a confirmation link is for, or None when the link is unknown, used or expired."""
        config = self.config()
        with pipeline.open_store(config) as store:
            person = store.pending_for_token(token_hash(token), self.now())
        return None if person is None else person.address

    def confirm(self, token: str, ip: str | None) -> str | None:
        """Confirm the sign-up of ``token`` and send the welcome mail; the address, or None if invalid."""
        config = self.config()
        s = config.subscribe
        now = self.now()
        with pipeline.open_store(config) as store:
            store.purge_unconfirmed(now - s.purge_unconfirmed_after)
            person = store.confirm(token_hash(token), now)
            if person is None:
                return None
            detail = json.dumps({"themes": sorted(person.themes)}, ensure_ascii=False)
            store.add_consent(
                Consent(person.email, "confirm", now, consent_hash(s.consent_text), detail, ip if s.record_ip else None)
            )
        archived = self._archived(config)
        base = config.digest.base_url.rstrip("/")
        msg = mail.welcome(
            from_=config.sender.from_,
            site=config.digest.title,
            to_addr=person.address,
            to_name=person.name,
            preferences_url=self._link(config, person.address, tokens.PREFERENCES),
            unsubscribe_url=self._link(config, person.address, tokens.UNSUBSCRIBE),
            latest_url=f"{base}/archive/{archived[0][0]}/" if archived else None,
            now=now,
        )
        try:
            mail.deliver(make_sender(config.sender), msg, self.now)
        except SendError as exc:
            # The subscription stands; the first issue carries the same links.
            log.warning("welcome mail not sent: %s", exc)
        return person.address

    def decline(self, token: str) -> bool:
        """ "No thanks": erase the pending sign-up; False when the link is invalid."""
        config = self.config()
        with pipeline.open_store(config) as store:
            return store.decline(token_hash(token), self.now())

    # -- preferences ------------------------------------------------------------------
    def _link(self, config: Config, address: str, purpose: str) -> str:
        key = pipeline.secret(config, strict=self.strict_tokens)
        list_id = config.digest.list_id or pipeline.default_list_id(config)
        token = tokens.make_token(key, address, list_id, purpose)
        make = tokens.preferences_url if purpose == tokens.PREFERENCES else tokens.unsubscribe_url
        return make(config.digest.base_url, token)

    def _owner(self, config: Config, token: str) -> str:
        key = pipeline.secret(config, strict=self.strict_tokens)
        list_id = config.digest.list_id or pipeline.default_list_id(config)
        try:
            return tokens.verify_token(key, token, list_id, tokens.PREFERENCES)
        except SubscriberError:
            raise SubscriberError("invalid preferences link") from None

    def preferences(self, token: str) -> Preferences:
        """What the preferences page of ``token``'s owner shows; ``SubscriberError`` for a bad link."""
        config = self.config()
        address = self._owner(config, token)
        with pipeline.open_store(config) as store:
            return self._preferences(config, store, address)

    def _preferences(self, config: Config, store: Store, address: str) -> Preferences:
        if store.forgotten_check()(address):
            raise SubscriberError("invalid preferences link")  # erased on request: nothing to show
        chosen = store.theme_choice(address)
        if chosen is None:
            listed = subscribers.load_lists(config.subscribers_dir, None).subscribers
            row = next((s for s in store.join_lists(listed) if s.email.lower() == address.lower()), None)
            chosen = row.themes if row is not None else frozenset()
        status = store.subscriber_status([address]).get(address.lower())
        themes = tuple(t.name for t in config.themes)
        return Preferences(config.digest.title, address, themes, chosen & set(themes), status in _LEAVING)

    def save_preferences(self, token: str, themes: Sequence[str], ip: str | None) -> Preferences:
        """Keep the themes ticked (none: every theme) and append a consent record."""
        config = self.config()
        address = self._owner(config, token)
        known = {t.name.casefold(): t.name for t in config.themes}
        unknown = [t for t in themes if t.casefold() not in known]
        if unknown:
            raise SubscriberError(f"unknown theme {unknown[0][:80]!r}")
        chosen = sorted({known[t.casefold()] for t in themes})
        now = self.now()
        s = config.subscribe
        with pipeline.open_store(config) as store:
            self._preferences(config, store, address)  # refuses a forgotten address
            store.set_theme_choice(address, chosen, now)
            detail = json.dumps({"themes": chosen}, ensure_ascii=False)
            store.add_consent(
                Consent(address, "preferences", now, consent_hash(s.consent_text), detail, ip if s.record_ip else None)
            )
            return self._preferences(config, store, address)

    def leave(self, token: str) -> str:
        """Unsubscribe from the preferences page; the address."""
        config = self.config()
        address = self._owner(config, token)
        with pipeline.open_store(config) as store:
            store.set_status(address, SubscriberStatus.UNSUBSCRIBED, self.now(), "preferences")
        return address
