"""The HTML of the web pages: the preview UI and the unsubscribe pages.

Pages are built from small Python string templates; every value is escaped
here, at the one place it enters HTML. Styling and script come from
``/_static/`` (see ``assets``), so no page needs inline script or style.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from digest.web.seam import Preview, PreviewSubscriber, PreviewVariant

#: The ``week`` path segment that means "the next issue" (``Backend.preview(None)``).
NEXT = "next"

VIEWS = {"html": "HTML", "text": "Text", "source": "Source"}
_VIEW_EXT = {"html": "html", "text": "txt", "source": "eml"}


def _e(value: str) -> str:
    return escape(value, quote=True)


def layout(title: str, body: str, *, body_attrs: str = "", script: str | None = None) -> str:
    """A whole HTML document around ``body`` (which must already be escaped)."""
    tag = f'\n<script src="{_e(script)}" defer></script>' if script else ""
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n'
        '<link rel="icon" href="data:,">\n'  # no favicon request to 404
        f"<title>{_e(title)}</title>\n"
        f'<link rel="stylesheet" href="/_static/site.css">{tag}\n'
        f"</head>\n<body{body_attrs}>\n{body}\n</body>\n</html>\n"
    )


def mask_email(address: str) -> str:
    """``ann@example.org`` → ``a***@example.org``: enough to recognise, not to harvest."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address[:1] + "***"
    return f"{local[:1]}***@{domain}"


def unsubscribe_confirm(site: str, address: str) -> str:
    """The page a GET of an unsubscribe link shows: who, and a button that POSTs."""
    body = (
        '<main class="card">\n'
        f"<h1>Unsubscribe from {_e(site)}?</h1>\n"
        f"<p>The address <strong>{_e(mask_email(address))}</strong> will get no more issues.</p>\n"
        '<form class="confirm" method="post">\n'
        '<input type="hidden" name="confirm" value="yes">\n'
        '<button type="submit">Unsubscribe</button>\n'
        "</form>\n"
        '<p class="muted">Nothing changes until you press the button.</p>\n'
        "</main>"
    )
    return layout(f"Unsubscribe – {site}", body)


def unsubscribed(site: str, address: str) -> str:
    """The answer to a successful (or repeated) unsubscribe POST."""
    body = (
        '<main class="card">\n'
        "<h1>You are unsubscribed</h1>\n"
        f"<p><strong>{_e(mask_email(address))}</strong> will get no more issues of {_e(site)}.</p>\n"
        "</main>"
    )
    return layout(f"Unsubscribed – {site}", body)


def bad_token(site: str) -> str:
    """The 400 page for a link that is damaged or was not made by this server."""
    body = (
        '<main class="card">\n'
        "<h1>This unsubscribe link is not valid</h1>\n"
        "<p>The link may have been cut short or changed when it was copied. "
        "Please use the unsubscribe link from a recent issue, or reply to the email.</p>\n"
        "</main>"
    )
    return layout(f"Invalid link – {site}", body)


def unsubscribe_help(site: str) -> str:
    """Where the web version's unsubscribe link leads: how to unsubscribe, since that copy is no one's."""
    body = (
        '<main class="card">\n'
        f"<h1>How to unsubscribe from {_e(site)}</h1>\n"
        "<p>You are reading a public web version of an issue. It belongs to no one, "
        "so it cannot unsubscribe anyone.</p>\n"
        "<p>To stop getting the emails, open an issue in your own inbox and either:</p>\n"
        "<ul>\n"
        "<li>follow the <strong>Unsubscribe</strong> link at the bottom of the email, or</li>\n"
        "<li>use your mail program's <strong>Unsubscribe</strong> button next to the sender's name "
        "(Gmail, Outlook, Apple Mail and Yahoo show one; it uses the email's List-Unsubscribe header).</li>\n"
        "</ul>\n"
        '<p class="muted">Either one unsubscribes you at once; no account or password is needed.</p>\n'
        "</main>"
    )
    return layout(f"How to unsubscribe – {site}", body)


def test_message(site: str) -> str:
    """Where a test message's unsubscribe link leads: it was a test, nobody was unsubscribed."""
    body = (
        '<main class="card">\n'
        "<h1>This was a test message</h1>\n"
        f"<p>The message came from <code>digest send --test</code> of {_e(site)}. Its links belong to no "
        "subscriber, so this one unsubscribed nobody and changed nothing.</p>\n"
        '<p class="muted">Subscribers\' own copies carry their own unsubscribe links.</p>\n'
        "</main>"
    )
    return layout(f"Test message – {site}", body)


def too_large(site: str) -> str:
    """The 413 page for an unsubscribe POST with an oversized body."""
    body = '<main class="card">\n<h1>Request too large</h1>\n</main>'
    return layout(site, body)


def message_url(week: str, variant: str, view: str) -> str:
    """The URL of one variant's message in one view (``html``, ``text``, ``source``)."""
    return f"/preview/{quote(week, safe='')}/{quote(variant, safe='')}.{_VIEW_EXT[view]}"


@dataclass(frozen=True, slots=True)
class Choice:
    """What the preview page shows: a variant, and the subscriber it was chosen through."""

    who: str
    variant: PreviewVariant | None
    subscriber: PreviewSubscriber | None


def choose(preview: Preview, who: str) -> Choice:
    """Resolve the ``who`` selector (``variant:KEY`` or ``sub:EMAIL``); default: the first variant."""
    kind, _, value = who.partition(":")
    if kind == "sub":
        for sub in preview.subscribers:
            if sub.email == value:
                chosen = preview.variant(sub.variant) if sub.variant is not None else None
                return Choice(who, chosen, sub)
    if kind == "variant" and (variant := preview.variant(value)) is not None:
        return Choice(who, variant, None)
    if preview.variants:
        first = preview.variants[0]
        return Choice(f"variant:{first.key}", first, None)
    return Choice("", None, None)


def _options(choices: list[tuple[str, str]], selected: str) -> str:
    return "".join(
        f'<option value="{_e(value)}"{" selected" if value == selected else ""}>{_e(label)}</option>'
        for value, label in choices
    )


def _switcher(preview: Preview, week: str | None, choice: Choice, view: str) -> str:
    weeks = [("", "Next issue"), *((w, w) for w in preview.weeks)]
    if week and week not in preview.weeks:
        weeks.append((week, week))
    labels = {v.key: v.label for v in preview.variants}
    variants = [(f"variant:{v.key}", f"Variant: {v.label}") for v in preview.variants]
    subs = [
        (
            f"sub:{s.email}",
            (f"{s.name} <{s.email}>" if s.name else s.email)
            + " – "
            + (labels.get(s.variant, s.variant) if s.variant is not None else "no message"),
        )
        for s in preview.subscribers
    ]
    who = f'<optgroup label="Variants">{_options(variants, choice.who)}</optgroup>' if variants else ""
    if subs:
        who += f'<optgroup label="Subscribers">{_options(subs, choice.who)}</optgroup>'
    views = "".join(
        f'<button type="submit" name="view" value="{key}" aria-pressed="{str(key == view).lower()}">{label}</button>'
        for key, label in VIEWS.items()
    )
    # An issue that failed to build has nothing to choose from: no empty select.
    show = f'<label>Show <select name="who">{who}</select></label>\n' if who else ""
    return (
        '<form id="switcher" method="get" action="/">\n'
        f'<label>Week <select name="week">{_options(weeks, week or "")}</select></label>\n'
        f"{show}"
        f'<input type="hidden" name="view" value="{_e(view)}">\n'
        '<button class="go secondary" type="submit">Show</button>\n'
        f'<span class="views" role="group" aria-label="View">{views}</span>\n'
        "</form>"
    )


def _meta(preview: Preview, choice: Choice, week_seg: str) -> str:
    rows: list[tuple[str, str]] = [("Issue", _e(preview.issue_key))]
    if choice.subscriber is not None:
        sub = choice.subscriber
        rows.append(("To", _e(f"{sub.name} <{sub.email}>" if sub.name else sub.email)))
    if choice.variant is not None:
        variant = choice.variant
        download = f'<a href="{_e(message_url(week_seg, variant.key, "source"))}" download>download .eml</a>'
        rows.append(("Subject", f'<span class="subject">{_e(variant.subject)}</span>'))
        rows.append(("Variant", f"{_e(variant.label)} · {download}"))
    return '<dl class="meta">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def preview_page(
    site: str, preview: Preview, *, week: str | None, who: str, view: str, fingerprint: str, dashboard: bool = False
) -> str:
    """The preview UI for one issue, one variant or subscriber, and one view (and a link to the dashboard)."""
    site = preview.title or site
    week_seg = week or NEXT
    choice = choose(preview, who)
    notices = ""
    if preview.error:
        notices += (
            '<div class="notice error" role="alert">The issue could not be built.'
            f"<code>{_e(preview.error)}</code></div>\n"
        )
    if preview.warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in preview.warnings)
        notices += f'<div class="notice warn" role="status">Warnings<ul>{items}</ul></div>\n'
    stage = ""
    if preview.error:
        pass  # the error notice stands in for the message
    elif choice.variant is not None:
        src = message_url(week_seg, choice.variant.key, view)
        if view == "source":
            src += "?inline=1"
        stage = (
            f'<div class="stage {view}"><iframe id="mail" title="The message" src="{_e(src)}" '
            'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"></iframe></div>'
        )
    elif choice.subscriber is not None:
        notices += (
            f'<div class="notice">{_e(choice.subscriber.email)} gets no message in this issue: '
            "none of their themes has entries.</div>\n"
        )
    else:
        notices += '<div class="notice">This issue has no message to show: there is nothing new.</div>\n'
    meta = "" if preview.error else _meta(preview, choice, week_seg)
    body = (
        '<div class="preview">\n<header class="bar">\n'
        f"<h1>{_e(site)} <small>preview</small></h1>\n"
        f"{_switcher(preview, week, choice, view)}\n"
        '<span id="status" class="status" aria-live="polite"></span>\n'
        + ('<a class="dashlink" href="/dashboard">Dashboard</a>\n' if dashboard else "")
        + f"</header>\n{meta}\n{notices}{stage}\n</div>"
    )
    attrs = f' data-fingerprint="{_e(fingerprint)}"'
    return layout(f"Preview {preview.issue_key} – {site}", body, body_attrs=attrs, script="/_static/preview.js")


def preview_failed(site: str, message: str, fingerprint: str) -> str:
    """The preview UI when the backend could not even describe the issue."""
    body = (
        '<div class="preview">\n<header class="bar">\n'
        f"<h1>{_e(site)} <small>preview</small></h1>\n"
        '<span id="status" class="status" aria-live="polite"></span>\n</header>\n'
        '<div class="notice error" role="alert">The issue could not be built.'
        f"<code>{_e(message)}</code></div>\n</div>"
    )
    attrs = f' data-fingerprint="{_e(fingerprint)}"'
    return layout(f"Preview – {site}", body, body_attrs=attrs, script="/_static/preview.js")
