"""The ASGI app: routes, security headers and the trusted hosts (``server`` runs it).

Backend calls are blocking (they render templates, read files, touch the
database), so every one runs in Starlette's thread pool; the event loop stays
free to answer the preview page's fingerprint polls while an issue builds.
"""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.errors import DigestError, SubscriberError
from digest.placeholders import TEST_LINK, UNSUBSCRIBE_HELP
from digest.web import assets, pages
from digest.web.archive import ArchiveOptions, ArchiveSource, archive_routes
from digest.web.dashboard import DashboardSource, dashboard_page
from digest.web.forms import MAX_BODY, form_fields, is_one_click
from digest.web.hosts import HostGuard
from digest.web.seam import Backend, Preview
from digest.web.subscribe import SignupSource, signup_routes

#: Pages of this app: own stylesheet and script only, framed only by itself.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)
#: A message's own HTML: inline styles and images as an email client would
#: allow, never script, forms or plugins.
MESSAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src * data: cid:; font-src *; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)
#: Plain text, JSON and the like.
PLAIN_CSP = "default-src 'none'; frame-ancestors 'self'"

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]{0,199}$")
_MAX_TOKEN = 1024
_STATIC = {
    "site.css": ("text/css; charset=utf-8", assets.SITE_CSS),
    "preview.js": ("text/javascript; charset=utf-8", assets.PREVIEW_JS),
}


class SecurityHeaders:
    """ASGI middleware: the headers every response carries unless it set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", PLAIN_CSP)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _html(body: str, status: int = 200, csp: str = PAGE_CSP, *, no_store: bool = False) -> HTMLResponse:
    headers = {"Content-Security-Policy": csp}
    if no_store:
        headers["Cache-Control"] = "no-store"
    return HTMLResponse(body, status_code=status, headers=headers)


def _split_name(name: str, allowed: tuple[str, ...]) -> tuple[str, str]:
    """``"all.html"`` → ``("all", "html")``, or 404 for anything unexpected."""
    stem, dot, ext = name.rpartition(".")
    if not dot or ext not in allowed or not _SAFE_SEGMENT.match(stem):
        raise HTTPException(404)
    return stem, ext


def create_app(
    backend: Backend,
    *,
    title: str,
    enable_preview: bool = True,
    base_url: str = "",
    archive: ArchiveOptions | None = None,
    subscribe: bool | None = None,
) -> Starlette:
    """The web app over ``backend``.

    Routes: ``/u/test`` (where a test message's links lead: "this was a test"),
    ``/u/{token}`` (confirmation page on GET, RFC 8058 one-click and
    the form on POST), ``/issues/{key}/{variant}.html`` (web versions),
    ``/unsubscribe-help`` (where a web version's unsubscribe link leads),
    ``/healthz``, and, when ``enable_preview``, the preview UI at ``/`` with
    ``/preview/{week}/{variant}.{html,txt,eml}`` and ``/_fingerprint``, and
    ``/dashboard`` (issues, send rate, sources, subscribers) when the backend
    is also a ``DashboardSource``.
    Without the preview those routes answer 404, for a public server.
    Every request whose ``Host`` is not ``base_url``'s host (and port) or a
    loopback name gets 400 (see ``hosts``).
    ``archive`` adds the public archive (``/archive/``, ``/archive/{key}/``,
    ``/archive.atom``); the backend must then also be an ``ArchiveSource``.
    A backend that is a ``SignupSource`` adds the preferences pages
    (``/p/{token}``) and, when ``subscribe`` (``None``: as the backend's
    config says), the double opt-in (``/subscribe``, ``/confirm/{token}``).
    """

    async def unsubscribe_page(request: Request) -> Response:
        token = request.path_params["token"]
        if len(token) > _MAX_TOKEN:
            return _html(pages.bad_token(title), 400, no_store=True)
        try:
            address = await run_in_threadpool(backend.check_token, token)
        except SubscriberError:
            return _html(pages.bad_token(title), 400, no_store=True)
        return _html(pages.unsubscribe_confirm(title, address), no_store=True)

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        if len(token) > _MAX_TOKEN:
            return _html(pages.bad_token(title), 400, no_store=True)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return _html(pages.too_large(title), 413, no_store=True)
        fields = form_fields(request.headers.get("content-type", ""), bytes(body))
        how = "one-click" if is_one_click(fields) else "form"
        try:
            address = await run_in_threadpool(backend.unsubscribe, token, how)
        except SubscriberError:
            return _html(pages.bad_token(title), 400, no_store=True)
        return _html(pages.unsubscribed(title, address), no_store=True)

    async def web_version(request: Request) -> Response:
        key = request.path_params["key"]
        variant, _ = _split_name(request.path_params["name"], ("html",))
        if not _SAFE_SEGMENT.match(key):
            raise HTTPException(404)
        html = await run_in_threadpool(backend.web_version, key, variant)
        if html is None:
            raise HTTPException(404)
        return _html(html, csp=MESSAGE_CSP)

    async def test_link(request: Request) -> Response:
        # GET and POST alike (a mail program's one-click button POSTs): nothing is read, nobody unsubscribed.
        return _html(pages.test_message(title), no_store=True)

    async def unsubscribe_help(request: Request) -> Response:
        return _html(pages.unsubscribe_help(title))

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok", headers={"Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC or (name == "preview.js" and not enable_preview):
            raise HTTPException(404)
        media_type, text = _STATIC[name]
        return Response(text, media_type=media_type, headers={"Cache-Control": "no-cache"})

    async def preview_ui(request: Request) -> Response:
        week = request.query_params.get("week") or None
        who = request.query_params.get("who", "")
        views = request.query_params.getlist("view")
        # The pressed view button comes after the hidden field, so the last value wins.
        view = views[-1] if views and views[-1] in pages.VIEWS else "html"
        if week is not None and not _SAFE_SEGMENT.match(week):
            week = None
        # The fingerprint is taken first: an edit made while building shows
        # up as a change at the next poll rather than being missed.
        fingerprint = await run_in_threadpool(backend.fingerprint)
        try:
            preview = await run_in_threadpool(backend.preview, week)
        except DigestError as exc:
            return _html(pages.preview_failed(title, str(exc), fingerprint), no_store=True)
        page = pages.preview_page(
            title, preview, week=week, who=who, view=view, fingerprint=fingerprint, dashboard=has_dashboard
        )
        return _html(page, no_store=True)

    async def preview_message(request: Request) -> Response:
        week = request.path_params["week"]
        key, ext = _split_name(request.path_params["name"], ("html", "txt", "eml"))
        if not _SAFE_SEGMENT.match(week):
            raise HTTPException(404)
        try:
            preview: Preview = await run_in_threadpool(backend.preview, None if week == pages.NEXT else week)
        except DigestError as exc:
            raise HTTPException(404, str(exc)) from exc
        variant = preview.variant(key)
        if variant is None:
            raise HTTPException(404)
        nocache = {"Cache-Control": "no-store"}
        if ext == "html":
            return _html(variant.html, csp=MESSAGE_CSP, no_store=True)
        if ext == "txt":
            return PlainTextResponse(variant.text, headers=nocache)
        if request.query_params.get("inline"):
            # The source view: the raw message as text, shown in the page.
            return PlainTextResponse(variant.eml.decode("utf-8", "replace"), headers=nocache)
        filename = f"{preview.issue_key}-{variant.key}.eml".replace("..", "_")
        disposition = {"Content-Disposition": f'attachment; filename="{filename}"', **nocache}
        return Response(variant.eml, media_type="message/rfc822", headers=disposition)

    async def fingerprint(request: Request) -> Response:
        try:
            value = await run_in_threadpool(backend.fingerprint)
        except DigestError as exc:
            return PlainTextResponse(str(exc), status_code=503, headers={"Cache-Control": "no-store"})
        return PlainTextResponse(value, headers={"Cache-Control": "no-store"})

    async def dashboard(request: Request) -> Response:
        assert isinstance(backend, DashboardSource)
        values = await run_in_threadpool(backend.dashboard)
        return _html(dashboard_page(title, values), no_store=True)

    has_dashboard = enable_preview and isinstance(backend, DashboardSource)
    routes = [
        # Before /u/{token}: a test message's link ("test" can never be a token).
        Route(TEST_LINK, test_link, methods=["GET", "POST"]),
        Route("/u/{token}", unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", unsubscribe, methods=["POST"]),
        Route("/issues/{key}/{name}", web_version, methods=["GET"]),
        Route(UNSUBSCRIBE_HELP, unsubscribe_help, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/_static/{name}", static, methods=["GET"]),
    ]
    if archive is not None:
        assert isinstance(backend, ArchiveSource), "an archive needs a backend that lists archived issues"
        routes += archive_routes(backend, title=title, options=archive, page_csp=PAGE_CSP, message_csp=MESSAGE_CSP)
    if isinstance(backend, SignupSource):
        enabled = backend.subscribe_enabled() if subscribe is None else subscribe
        routes += signup_routes(backend, title=title, page_csp=PAGE_CSP, subscribe_enabled=enabled)
    if enable_preview:
        routes += [
            Route("/", preview_ui, methods=["GET"]),
            Route("/preview/{week}/{name}", preview_message, methods=["GET"]),
            Route("/_fingerprint", fingerprint, methods=["GET"]),
        ]
    if has_dashboard:
        # The dashboard names subscribers' counts and sources: the preview's, never the public server's.
        routes.append(Route("/dashboard", dashboard, methods=["GET"]))
    app = Starlette(routes=routes)
    # Added first, so it runs inside SecurityHeaders: a refused Host still gets the headers.
    app.add_middleware(HostGuard, base_url=base_url)
    app.add_middleware(SecurityHeaders)
    return app
