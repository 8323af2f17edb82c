"""The HTML of the sign-up and preferences pages (every value escaped here).

Plain forms that POST to their own URL: they work without cookies and
without JavaScript. The honeypot field is hidden by the stylesheet and
labelled for the screen readers that might still reach it.
"""

from __future__ import annotations

from html import escape

from digest.web.pages import layout, mask_email, unsubscribed

#: The name of the field only robots fill in (people never see it).
HONEYPOT = "website"


def _e(value: str) -> str:
    return escape(value, quote=True)


def _themes(themes: tuple[str, ...], chosen: frozenset[str]) -> str:
    if not themes:
        return ""
    boxes = "\n".join(
        f'<label class="check"><input type="checkbox" name="themes" value="{_e(t)}"'
        + (" checked" if t in chosen else "")
        + f"> {_e(t)}</label>"
        for t in themes
    )
    return (
        '<fieldset class="themes"><legend>Themes</legend>\n'
        f"{boxes}\n"
        '<p class="muted">Tick none to get every theme.</p></fieldset>\n'
    )


def subscribe_page(
    site: str,
    themes: tuple[str, ...],
    consent_text: str,
    *,
    error: str = "",
    email: str = "",
    name: str = "",
    chosen: frozenset[str] = frozenset(),
) -> str:
    """``GET /subscribe``: the form (again, with ``error``, after a bad POST)."""
    problem = f'<p class="notice error" role="alert">{_e(error)}</p>\n' if error else ""
    body = (
        '<main class="card wide">\n'
        f"<h1>Subscribe to {_e(site)}</h1>\n"
        f"{problem}"
        '<form class="signup" method="post" action="/subscribe">\n'
        '<label for="email">Email address</label>\n'
        '<input id="email" name="email" type="email" required maxlength="254" autocomplete="email"'
        f' value="{_e(email)}">\n'
        '<label for="name">Name <span class="muted">(optional)</span></label>\n'
        f'<input id="name" name="name" type="text" maxlength="200" autocomplete="name" value="{_e(name)}">\n'
        f"{_themes(themes, chosen)}"
        f'<div class="hp" aria-hidden="true"><label for="{HONEYPOT}">Leave this empty</label>'
        f'<input id="{HONEYPOT}" name="{HONEYPOT}" type="text" tabindex="-1" autocomplete="off"></div>\n'
        '<label class="check consent"><input type="checkbox" name="consent" value="yes" required> '
        f"{_e(consent_text)}</label>\n"
        '<button type="submit">Subscribe</button>\n'
        "</form>\n"
        '<p class="muted">We send you one mail to confirm; nothing else until you do. '
        "No tracking pixels, no tracked links.</p>\n"
        "</main>"
    )
    return layout(f"Subscribe – {site}", body)


def check_inbox(site: str) -> str:
    """The one answer to every accepted ``POST /subscribe`` (new, pending or subscribed address alike)."""
    body = (
        '<main class="card">\n'
        "<h1>Check your inbox</h1>\n"
        f"<p>If the address can receive {_e(site)}, a message with a confirmation link is on its way. "
        "Open it and press Confirm to start your subscription.</p>\n"
        '<p class="muted">Nothing arrived after a few minutes? Look in the spam folder, or try again later.</p>\n'
        "</main>"
    )
    return layout(f"Check your inbox – {site}", body)


def confirm_page(site: str, address: str) -> str:
    """``GET /confirm/<token>``: two buttons; nothing changes until one is pressed (link scanners prefetch)."""
    body = (
        '<main class="card">\n'
        f"<h1>Subscribe to {_e(site)}?</h1>\n"
        f"<p>Confirm that <strong>{_e(mask_email(address))}</strong> should get {_e(site)}.</p>\n"
        '<form class="confirm" method="post">\n'
        '<button type="submit" name="action" value="confirm">Confirm</button>\n'
        '<button class="secondary" type="submit" name="action" value="decline">No thanks</button>\n'
        "</form>\n"
        '<p class="muted">Nothing changes until you press a button.</p>\n'
        "</main>"
    )
    return layout(f"Confirm – {site}", body)


def confirmed(site: str, address: str) -> str:
    body = (
        '<main class="card">\n'
        "<h1>You are subscribed</h1>\n"
        f"<p><strong>{_e(mask_email(address))}</strong> will get the next issue of {_e(site)}. "
        "A welcome message with your preferences link is on its way.</p>\n"
        "</main>"
    )
    return layout(f"Subscribed – {site}", body)


def declined(site: str) -> str:
    body = (
        '<main class="card">\n'
        "<h1>Nothing was subscribed</h1>\n"
        "<p>The request and the address it was for are deleted.</p>\n"
        "</main>"
    )
    return layout(f"No thanks – {site}", body)


def bad_link(site: str, what: str) -> str:
    """The page for a confirmation or preferences link that is unknown, used, expired or damaged."""
    body = (
        '<main class="card">\n'
        f"<h1>This {_e(what)} link is not valid</h1>\n"
        "<p>It may have expired, been used already, or been cut short when it was copied.</p>\n"
        '<p><a href="/subscribe">Subscribe again</a></p>\n'
        "</main>"
    )
    return layout(f"Invalid link – {site}", body)


def preferences_page(
    site: str,
    address: str,
    themes: tuple[str, ...],
    chosen: frozenset[str],
    *,
    left: bool,
    saved: bool = False,
    error: str = "",
) -> str:
    """``GET /p/<token>``: the theme checkboxes, and a separate unsubscribe button."""
    notice = '<p class="notice ok" role="status">Your themes are saved.</p>\n' if saved else ""
    if error:
        notice = f'<p class="notice error" role="alert">{_e(error)}</p>\n'

    state = (
        '<p class="notice warn">You are unsubscribed: saving themes does not subscribe you again.</p>\n' if left else ""
    )
    picker = _themes(themes, chosen) or "<p>This digest has no themes to choose from.</p>\n"
    body = (
        '<main class="card wide">\n'
        f"<h1>Your {_e(site)} preferences</h1>\n"
        f"<p>For <strong>{_e(mask_email(address))}</strong>.</p>\n"
        f"{notice}{state}"
        '<form class="signup" method="post">\n'
        f"{picker}"
        '<button type="submit" name="action" value="save">Save themes</button>\n'
        "</form>\n"
        '<form class="confirm" method="post">\n'
        '<button class="secondary" type="submit" name="action" value="unsubscribe">Unsubscribe</button>\n'
        "</form>\n"
        "</main>"
    )
    return layout(f"Preferences – {site}", body)


def left(site: str, address: str) -> str:
    """Unsubscribed from the preferences page: the same answer as the unsubscribe link's."""
    return unsubscribed(site, address)


def unavailable(site: str) -> str:
    body = (
        '<main class="card">\n'
        "<h1>Please try again later</h1>\n"
        "<p>The confirmation mail could not be sent just now.</p>\n"
        "</main>"
    )
    return layout(f"Try again later – {site}", body)
