"""Routes of double opt-in and preferences: ``/subscribe``, ``/confirm/<token>``, ``/p/<token>``.

- ``GET /subscribe``: the form (``email``, ``name``, repeated ``themes``,
  ``consent``, and a honeypot). ``POST /subscribe`` answers the same "check
  your inbox" page for a new, pending or subscribed address; a filled
  honeypot gets that page too, and nothing is done.
- ``GET /confirm/<token>`` shows Confirm / No thanks and changes nothing
  (mail scanners prefetch links); ``POST`` with ``action=confirm`` or
  ``action=decline`` acts. An unknown, used or expired link gets 400, like
  a bad unsubscribe or preferences link.
- ``GET /p/<token>``: the theme checkboxes and an unsubscribe button;
  ``POST`` with ``action=save`` or ``action=unsubscribe``.

No cookies: the tokens in the URLs authorise the confirm and preferences
forms, and the sign-up form does nothing without the mailbox owner's
confirmation. A POST whose ``Origin`` names another site is refused.
Bodies are capped at ``forms.MAX_BODY``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.errors import SendError, SubscriberError
from digest.web import signup_pages as pages
from digest.web.forms import MAX_BODY, form_values

#: Confirmation tokens are ``secrets.token_urlsafe(16)``; preferences tokens are longer.
_CONFIRM_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_MAX_TOKEN = 1024


@dataclass(frozen=True, slots=True)
class SubscribeForm:
    """What the form shows: the site, the themes one may pick (none: no picker), the consent text."""

    site: str
    themes: tuple[str, ...]
    consent_text: str


@dataclass(frozen=True, slots=True)
class Preferences:
    """One subscriber's preferences page: ``chosen`` empty means every theme; ``left``: unsubscribed."""

    site: str
    address: str
    themes: tuple[str, ...]
    chosen: frozenset[str]
    left: bool


@runtime_checkable
class SignupSource(Protocol):
    """What these routes need from the backend (blocking calls, run in the thread pool)."""

    def subscribe_enabled(self) -> bool:
        """Whether ``[subscribe] enabled`` (read once, when the app is made)."""
        ...

    def subscribe_form(self) -> SubscribeForm: ...

    def subscribe(self, email: str, name: str, themes: Sequence[str], ip: str | None) -> None:
        """Ask for a confirmation; ``SubscriberError`` for bad input, ``SendError`` if the mail failed."""
        ...

    def confirmation(self, token: str) -> str | None: ...

    def confirm(self, token: str, ip: str | None) -> str | None: ...

    def decline(self, token: str) -> bool: ...

    def preferences(self, token: str) -> Preferences: ...

    def save_preferences(self, token: str, themes: Sequence[str], ip: str | None) -> Preferences: ...

    def leave(self, token: str) -> str: ...


def _page(body: str, csp: str, status: int = 200) -> HTMLResponse:
    headers = {"Content-Security-Policy": csp, "Cache-Control": "no-store"}
    return HTMLResponse(body, status_code=status, headers=headers)


def _foreign_origin(request: Request) -> bool:
    """Whether the POST came from a form on another site (browsers send Origin on form POSTs)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower()


async def _read_form(request: Request) -> dict[str, list[str]] | None:
    """The form's fields, or None when the body is over ``MAX_BODY``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return form_values(request.headers.get("content-type", ""), bytes(body))


def _one(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name, [])
    return values[0] if values else ""


def signup_routes(source: SignupSource, *, title: str, page_csp: str, subscribe_enabled: bool) -> list[Route]:
    """The preferences routes, and the sign-up ones when ``subscribe_enabled``."""

    def client_ip(request: Request) -> str | None:
        # Handed over always; the backend keeps it only when [subscribe] record_ip says so.
        return request.client.host if request.client is not None else None

    async def form(request: Request) -> Response:
        f = await run_in_threadpool(source.subscribe_form)
        return _page(pages.subscribe_page(f.site, f.themes, f.consent_text), page_csp)

    async def subscribe(request: Request) -> Response:
        f = await run_in_threadpool(source.subscribe_form)
        fields = await _read_form(request)
        if fields is None:
            return _page(
                pages.subscribe_page(f.site, f.themes, f.consent_text, error="The form is too large."), page_csp, 413
            )
        if _foreign_origin(request):
            return _page(
                pages.subscribe_page(f.site, f.themes, f.consent_text, error="Please use this form."), page_csp, 403
            )
        email, name = _one(fields, "email").strip(), _one(fields, "name").strip()
        themes = fields.get("themes", [])
        if _one(fields, pages.HONEYPOT):
            return _page(pages.check_inbox(f.site), page_csp)  # a robot: the same answer, nothing done

        def again(error: str) -> Response:
            # What was typed goes back into the form (escaped), so the person can fix it.
            chosen = frozenset(t for t in themes if t in f.themes)
            page = pages.subscribe_page(
                f.site, f.themes, f.consent_text, error=error, email=email[:254], name=name[:200], chosen=chosen
            )
            return _page(page, page_csp, 400)

        if not email:
            return again("Please give your email address.")
        if _one(fields, "consent") != "yes":
            return again("Please tick the box to agree, so we may send you the digest.")
        try:
            await run_in_threadpool(source.subscribe, email, name, themes, client_ip(request))
        except SubscriberError as exc:
            return again(_reason(str(exc)))
        except SendError:
            return _page(pages.unavailable(f.site), page_csp, 503)
        return _page(pages.check_inbox(f.site), page_csp)

    def confirm_token(request: Request) -> str | None:
        token: str = request.path_params["token"]
        return token if _CONFIRM_TOKEN.fullmatch(token) else None

    async def confirm_page(request: Request) -> Response:
        token = confirm_token(request)
        address = None if token is None else await run_in_threadpool(source.confirmation, token)
        if address is None:
            return _page(pages.bad_link(title, "confirmation"), page_csp, 400)
        return _page(pages.confirm_page(title, address), page_csp)

    async def confirm(request: Request) -> Response:
        token = confirm_token(request)
        fields = await _read_form(request)
        if fields is None:
            return _page(pages.bad_link(title, "confirmation"), page_csp, 413)
        if token is None or _foreign_origin(request):
            return _page(pages.bad_link(title, "confirmation"), page_csp, 400)
        if _one(fields, "action") == "decline":
            if not await run_in_threadpool(source.decline, token):
                return _page(pages.bad_link(title, "confirmation"), page_csp, 400)
            return _page(pages.declined(title), page_csp)
        address = await run_in_threadpool(source.confirm, token, client_ip(request))
        if address is None:
            return _page(pages.bad_link(title, "confirmation"), page_csp, 400)
        return _page(pages.confirmed(title, address), page_csp)

    async def preferences_page(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            if len(token) > _MAX_TOKEN:
                raise SubscriberError("token too long")
            p = await run_in_threadpool(source.preferences, token)
        except SubscriberError:
            return _page(pages.bad_link(title, "preferences"), page_csp, 400)
        return _page(pages.preferences_page(p.site, p.address, p.themes, p.chosen, left=p.left), page_csp)

    async def preferences(request: Request) -> Response:
        token = request.path_params["token"]
        fields = await _read_form(request)
        if fields is None:
            return _page(pages.bad_link(title, "preferences"), page_csp, 413)
        if len(token) > _MAX_TOKEN or _foreign_origin(request):
            return _page(pages.bad_link(title, "preferences"), page_csp, 400)
        try:
            if _one(fields, "action") == "unsubscribe":
                address = await run_in_threadpool(source.leave, token)
                return _page(pages.left(title, address), page_csp)
            p = await run_in_threadpool(source.save_preferences, token, fields.get("themes", []), client_ip(request))
        except SubscriberError as exc:
            if "theme" in str(exc):
                c = await run_in_threadpool(source.preferences, token)
                page = pages.preferences_page(
                    c.site, c.address, c.themes, c.chosen, left=c.left, error=_reason(str(exc))
                )
                return _page(page, page_csp, 400)
            return _page(pages.bad_link(title, "preferences"), page_csp, 400)
        return _page(pages.preferences_page(p.site, p.address, p.themes, p.chosen, left=p.left, saved=True), page_csp)

    routes = [
        Route("/p/{token}", preferences_page, methods=["GET"]),
        Route("/p/{token}", preferences, methods=["POST"]),
    ]
    if subscribe_enabled:
        routes += [
            Route("/subscribe", form, methods=["GET"]),
            Route("/subscribe", subscribe, methods=["POST"]),
            Route("/confirm/{token}", confirm_page, methods=["GET"]),
            Route("/confirm/{token}", confirm, methods=["POST"]),
        ]
    return routes


def _reason(message: str) -> str:
    """A validation message fit to show: one line, bounded (it may quote what was typed)."""
    line = " ".join(message.split())
    return line if len(line) <= 300 else line[:299] + "…"
