"""The public archive: past issues as pages, and an Atom feed of them (RFC 4287).

Only issues whose send has finished are listed, and never one its edition
keeps out (``archive = false``). Each issue is shown as its all-themes
variant personalised neutrally: no subscriber's address, name or token ever
reaches these pages. The feed has stable entry ids (the issue's archive
URL), ``updated`` = when the send finished, and answers conditional
requests (ETag, Last-Modified) with 304.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from html import escape
from typing import Protocol, runtime_checkable
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

#: Issues listed per archive page.
PAGE_SIZE = 20


@dataclass(frozen=True, slots=True)
class ArchiveItem:
    """One archived issue: its key, subject, when its send finished, and a short summary."""

    key: str
    subject: str
    finished: dt.datetime
    summary: str = ""


@dataclass(frozen=True, slots=True)
class ArchiveOptions:
    """How the archive is served: the public base URL, and full content or summaries in the feed."""

    base_url: str
    full: bool = False


@runtime_checkable
class ArchiveSource(Protocol):
    """What the archive needs from the backend."""

    def archive_items(self) -> Sequence[ArchiveItem]:
        """Archived issues, newest first."""
        ...

    def archive_html(self, key: str) -> str | None:
        """The neutral all-themes HTML of an archived issue, or None when it is not archived."""
        ...


def _e(value: str) -> str:
    return escape(value, quote=True)


def archive_page(site: str, items: Sequence[ArchiveItem], page: int, pages: int) -> str:
    """The list page (already paged)."""
    from digest.web.pages import layout

    rows = "\n".join(
        f'<li><a href="/archive/{_e(i.key)}/">{_e(i.subject)}</a> '
        f'<time datetime="{_e(i.finished.isoformat())}">{_e(i.finished.strftime("%d %b %Y"))}</time>'
        + (f"<br><small>{_e(i.summary)}</small>" if i.summary else "")
        + "</li>"
        for i in items
    )
    nav = []
    if page > 1:
        nav.append(f'<a rel="prev" href="/archive/?page={page - 1}">Newer issues</a>')
    if page < pages:
        nav.append(f'<a rel="next" href="/archive/?page={page + 1}">Older issues</a>')
    body = (
        f'<main class="narrow"><h1>{_e(site)}: past issues</h1>'
        + (f'<ol class="archive">{rows}</ol>' if items else "<p>No issue has been sent yet.</p>")
        + (f'<nav class="pager">{" · ".join(nav)}</nav>' if nav else "")
        + '<p><a href="/archive.atom">Atom feed</a></p></main>'
    )
    head_link = '<link rel="alternate" type="application/atom+xml" href="/archive.atom">'
    return layout(f"{site}: archive", body).replace("</head>", head_link + "\n</head>", 1)


def atom_feed(site: str, base_url: str, items: Sequence[ArchiveItem], contents: dict[str, str] | None = None) -> str:
    """The Atom document; ``contents`` (key → HTML) makes full-content entries, else summaries."""
    updated = max((i.finished for i in items), default=dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
    home = f"{base_url}/archive/"
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<title>{xml_escape(site)}</title>",
        f"<id>{xml_escape(home)}</id>",
        f"<updated>{updated.astimezone(dt.UTC).isoformat()}</updated>",
        f'<link rel="self" type="application/atom+xml" href={quoteattr(base_url + "/archive.atom")}/>',
        f'<link rel="alternate" type="text/html" href={quoteattr(home)}/>',
        f"<author><name>{xml_escape(site)}</name></author>",
    ]
    for i in items:
        url = f"{home}{i.key}/"
        out += [
            "<entry>",
            f"<title>{xml_escape(i.subject)}</title>",
            f"<id>{xml_escape(url)}</id>",  # stable: the issue's archive address
            f"<updated>{i.finished.astimezone(dt.UTC).isoformat()}</updated>",
            f'<link rel="alternate" type="text/html" href={quoteattr(url)}/>',
        ]
        if contents is not None and i.key in contents:
            out.append(f'<content type="html">{xml_escape(contents[i.key])}</content>')
        else:
            out.append(f'<summary type="text">{xml_escape(i.summary or i.subject)}</summary>')
        out.append("</entry>")
    out.append("</feed>")
    return "\n".join(out) + "\n"


def archive_routes(
    source: ArchiveSource, *, title: str, options: ArchiveOptions, page_csp: str, message_csp: str
) -> list[Route]:
    """The routes ``/archive/``, ``/archive/{key}/`` and ``/archive.atom``."""

    async def listing(request: Request) -> Response:
        raw = request.query_params.get("page", "1")
        page = int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 0
        if page < 1:
            raise HTTPException(404)
        items = await run_in_threadpool(source.archive_items)
        pages = max(1, -(-len(items) // PAGE_SIZE))
        if page > pages:
            raise HTTPException(404)
        shown = items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return HTMLResponse(
            archive_page(title, shown, page, pages),
            headers={"Content-Security-Policy": page_csp, "Cache-Control": "public, max-age=300"},
        )

    async def issue(request: Request) -> Response:
        key = request.path_params["key"]
        if len(key) > 100 or not all(c.isalnum() or c in "-." for c in key):
            raise HTTPException(404)
        html = await run_in_threadpool(source.archive_html, key)
        if html is None:
            raise HTTPException(404)
        return HTMLResponse(
            html, headers={"Content-Security-Policy": message_csp, "Cache-Control": "public, max-age=300"}
        )

    async def feed(request: Request) -> Response:
        items = list(await run_in_threadpool(source.archive_items))
        contents = None
        if options.full:
            contents = {}
            for i in items:
                html = await run_in_threadpool(source.archive_html, i.key)
                if html is not None:
                    contents[i.key] = html
        body = atom_feed(title, options.base_url, items, contents).encode("utf-8")
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        newest = max((i.finished for i in items), default=None)
        headers = {"ETag": etag, "Cache-Control": "public, max-age=300"}
        if newest is not None:
            headers["Last-Modified"] = format_datetime(newest.astimezone(dt.UTC), usegmt=True)
        if _not_modified(request, etag, newest):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/atom+xml; charset=utf-8", headers=headers)

    return [
        Route("/archive/", listing, methods=["GET"]),
        Route("/archive/{key}/", issue, methods=["GET"]),
        Route("/archive.atom", feed, methods=["GET"]),
    ]


def _not_modified(request: Request, etag: str, newest: dt.datetime | None) -> bool:
    """RFC 9110: If-None-Match wins over If-Modified-Since."""
    match = request.headers.get("if-none-match")
    if match is not None:
        tags = {t.strip().removeprefix("W/") for t in match.split(",")}
        return etag in tags or "*" in tags
    since = request.headers.get("if-modified-since")
    if since and newest is not None:
        try:
            when = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        if when.tzinfo is None:
            return False
        return newest.replace(microsecond=0) <= when
    return False
