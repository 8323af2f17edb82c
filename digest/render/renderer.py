"""Render an Issue into the variants subscribers receive.

A variant is one distinct selection of themes. Each variant is rendered and
CSS-inlined once, with placeholder tokens where per-subscriber values go
(``digest.placeholders``); ``placeholders.personalise`` fills them per reader.
Each rendering draws its own random tokens and carries them in ``Rendered``.
Rendering makes no network request.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from digest import placeholders
from digest.errors import RenderError
from digest.models import TOP_STORIES, Issue, Rendered, TokenSet
from digest.render import environment
from digest.render.inline import Inliner
from digest.render.view import IssueView, build_view, slug, theme_order

log = logging.getLogger(__name__)

ALL = "all"
NONE = "none"
#: The most bytes each token can take once filled into the HTML. Compose refuses
#: longer values (names of 300 characters, addresses of 254, unsubscribe URLs of
#: 900), and HTML escaping turns a character into at most 6 bytes (``&quot;``).
FILLED_MAX: Mapping[str, int] = {
    "name": 300 * 6,
    "greeting": len("Hello ,") + 300 * 6,
    "email": 254 * 6,
    "unsubscribe_url": 900 * 6,
    # Compose refuses a preferences URL that HTML escaping would grow (an "&"): one byte a character.
    "preferences_url": 900,
}
#: Fresh draws before giving up on a token set that feed text keeps producing.
TOKEN_DRAWS = 3


class EmptyVariant(RenderError):
    """The selected themes have no entry in this issue; there is nothing to send."""


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """What rendering needs from the config.

    ``tz`` is a ``ZoneInfo`` or a zone name. ``templates_dir`` is the working
    folder's ``templates/`` (files there override the packaged ones); it may be
    ``None`` or missing. Gmail clips a message whose HTML passes about 102 KB
    and hides what follows, the unsubscribe link included: the filled HTML
    stays under ``clip_bytes`` and the end of the first unsubscribe link
    within ``unsubscribe_within`` bytes, for any subscriber (see
    ``FILLED_MAX``). ``themes`` is the configured theme names in config
    order; the table of contents follows it.
    ``max_entries`` caps the entries each variant's email shows (HTML and
    text alike); the rest are summarised as "N more in the web version",
    which shows them all (``render_web``).
    """

    title: str
    base_url: str
    tz: ZoneInfo | str
    templates_dir: Path | None
    allow_images: bool = False
    clip_bytes: int = 100_000
    unsubscribe_within: int = 90_000
    themes: tuple[str, ...] = ()
    max_entries: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        return self.tz if isinstance(self.tz, ZoneInfo) else ZoneInfo(self.tz)


def variant_key(themes: frozenset[str] | None, issue_themes: Iterable[str]) -> str:
    """A stable file-name-safe key for the part of ``issue_themes`` that ``themes`` selects.

    ``"all"`` when nothing is selected or the selection covers every theme of
    the issue; ``"none"`` when it covers none; otherwise the slugged names and
    a short hash, e.g. ``"cybersecurity-internet-governance-3f1c2a9b"``.
    An edition's "Top stories" are in every selection, so they are left out
    of the name: a variant keeps the key it has without an edition (unless
    Top stories are all it holds).
    """
    present = frozenset(issue_themes)
    chosen = present if not themes else (frozenset(themes) | {TOP_STORIES}) & present
    if chosen == present:
        return ALL
    if not chosen:
        return NONE
    names = sorted(chosen - {TOP_STORIES} or chosen)
    short = hashlib.sha256("\n".join(names).encode()).hexdigest()[:8]
    stem = "-".join(slug(n) for n in names)[:40].rstrip("-")
    return f"{stem}-{short}"


class Renderer:
    """Renders issues with one set of templates; build once, render many variants."""

    def __init__(self, settings: RenderSettings, *, draw_tokens: Callable[[], TokenSet] = TokenSet.fresh) -> None:
        """Load the templates; a syntax error raises ``RenderError("file:line: ...")``.

        ``draw_tokens`` gives each rendering its tokens (random; tests may pin them).
        """
        self.settings = settings
        self._draw = draw_tokens
        self.tz = settings.zone
        self.env = environment.build_environment(settings.templates_dir)
        environment.check_all(self.env)
        self._html = environment.load(self.env, environment.DIGEST_HTML)
        self._text = environment.load(self.env, environment.DIGEST_TEXT)
        self._subject = environment.load(self.env, environment.SUBJECT)
        # Every variant inlines the same stylesheet: its rules are built once, here.
        self._inliner = Inliner()

    # -- public API -------------------------------------------------------

    def render_variant(self, issue: Issue, themes: frozenset[str] | None) -> Rendered:
        """The variant of ``issue`` for ``themes`` (``None`` or empty: every theme).

        Raises ``EmptyVariant`` when no section of the issue has a selected theme.
        Subject, HTML (inlined) and text hold the tokens of ``Rendered.tokens``
        exactly where the templates put a per-subscriber value, and nowhere else.
        """
        chosen, key = self._select(issue, themes)
        # Rendered with a probe set no one else ever sees, so every probe token
        # in the output is one a template put there. The drawn set replaces them
        # and is kept only if the result holds it at exactly those places: feed
        # text that produced a drawn token would otherwise be filled like a
        # template's (only a pinned draw makes that possible; then it draws again).
        probe = TokenSet.fresh()
        parts = self._render(issue, chosen, key, dict(probe.pairs()), probe)
        # Cut at the probe tokens once; each draw joins the pieces (placeholders.swap) and must cut the same.
        cuts = [placeholders.cut(part, probe) for part in parts]
        for _ in range(TOKEN_DRAWS):
            tokens = self._draw()
            drawn = dict(tokens.pairs())
            subject, html, text = (placeholders.join(*c, drawn) for c in cuts)
            if all(placeholders.cut(b, tokens) == c for c, b in zip(cuts, (subject, html, text), strict=True)):
                break
        else:
            raise RenderError(f"issue {issue.key} ({key}): its entries keep producing placeholder tokens")
        ordered = tuple(t for t in theme_order(issue, self.settings.themes) if t in chosen)
        return Rendered(
            issue_key=issue.key, variant=key, themes=ordered, subject=subject, html=html, text=text, tokens=tokens
        )

    def variants(self, issue: Issue, selections: Iterable[frozenset[str]]) -> dict[str, Rendered]:
        """Each distinct selection rendered once, keyed by ``variant_key``.

        Selections that pick no theme of the issue are left out: their
        subscribers get nothing this time.
        """
        out: dict[str, Rendered] = {}
        for selection in selections:
            key = variant_key(selection, issue.themes)
            if key in out or key == NONE:
                continue
            try:
                out[key] = self.render_variant(issue, selection)
            except EmptyVariant:
                continue
        return out

    def render_full(
        self, issue: Issue, themes: frozenset[str] | None, values: placeholders.Values
    ) -> tuple[str, str, str]:
        """The slow path: ``(subject, html, text)`` rendered with one subscriber's real values.

        ``placeholders.personalise`` of ``render_variant`` gives exactly this; tests rely on that.
        """
        chosen, key = self._select(issue, themes)
        probe = TokenSet.fresh()  # decides the cut, as in render_variant
        return self._render(issue, chosen, key, values.by_key(), probe)

    def render_web(self, issue: Issue, themes: frozenset[str] | None, values: Mapping[str, str]) -> str:
        """The web version of a variant: the HTML with every entry, no email cap and no clipping."""
        chosen, key = self._select(issue, themes)
        full = self._view(issue, chosen, None, capped=False)
        subject = self._subject_for(full, key, values)
        return self._html_for(full, key, values, subject)

    def web_url(self, issue_key: str, variant: str) -> str:
        """Where the web version of a variant lives: ``{base_url}/issues/{key}/{variant}.html``."""
        return f"{self.settings.base_url.rstrip('/')}/issues/{issue_key}/{variant}.html"

    # -- internals --------------------------------------------------------

    def _select(self, issue: Issue, themes: frozenset[str] | None) -> tuple[frozenset[str], str]:
        present = frozenset(issue.themes)
        # An edition's Top stories go to everyone (as in variant_key).
        chosen = present if not themes else (frozenset(themes) | {TOP_STORIES}) & present
        if not chosen:
            wanted = ", ".join(sorted(themes or ())) or "any theme"
            raise EmptyVariant(f"issue {issue.key} has no entries for {wanted}")
        return chosen, variant_key(themes, issue.themes)

    def _view(self, issue: Issue, chosen: frozenset[str], limit: int | None, *, capped: bool = True) -> IssueView:
        cap = self.settings.max_entries if capped else None
        if cap is not None:
            limit = cap if limit is None else min(limit, cap)
        return build_view(
            issue,
            chosen,
            title=issue.title or self.settings.title,
            tz=self.tz,
            allow_images=self.settings.allow_images,
            limit=limit,
            configured=self.settings.themes,
        )

    def _context(self, view: IssueView, key: str, values: Mapping[str, str]) -> dict[str, Any]:
        return {
            "title": view.title,
            "issue": view,
            "web_url": self.web_url(view.key, key),
            **{name: values[name] for name in placeholders.KEYS},
        }

    def _call(self, template: jinja2.Template, context: Mapping[str, Any]) -> str:
        try:
            return template.render(context)
        except jinja2.TemplateError as exc:
            environment.raise_render_error(exc, template.name or "template")

    def _html_for(self, view: IssueView, key: str, values: Mapping[str, str], subject: str) -> str:
        context = self._context(view, key, values)
        context["subject"] = subject
        return self._inliner.inline(self._call(self._html, context))

    def _subject_for(self, view: IssueView, key: str, values: Mapping[str, str]) -> str:
        if view.subject:
            return view.subject  # the edition's subject replaces the template's output
        return " ".join(self._call(self._subject, self._context(view, key, values)).split())

    def _render(
        self, issue: Issue, chosen: frozenset[str], key: str, values: Mapping[str, str], probe: TokenSet
    ) -> tuple[str, str, str]:
        """``(subject, html, text)`` with ``values``; the HTML is cut short when it would be clipped.

        Whether and where to cut is decided on the version with the ``probe``
        tokens, so the fast path and the slow path always keep the same entries.
        """
        tokens = dict(probe.pairs())
        full = self._view(issue, chosen, None)
        subject = self._subject_for(full, key, tokens)
        html = self._html_for(full, key, tokens, subject)
        limit = None
        if not self._fits(html, probe):
            limit = self._shrink(issue, chosen, key, subject, full.total, probe)
        if values != tokens or limit is not None:
            subject = self._subject_for(full, key, values)
            shown = full if limit is None else self._view(issue, chosen, limit)
            html = self._html_for(shown, key, values, subject)
        # Gmail clips only HTML; the text part carries what max_entries lets through.
        text = self._call(self._text, self._context(full, key, values))
        return subject, html, text

    def _fits(self, html: str, probe: TokenSet) -> bool:
        """Whether ``html`` (with ``probe`` tokens) stays within the clipping bounds once filled for anyone."""
        if self._filled_size(html, probe) >= self.settings.clip_bytes:
            return False
        link = html.find(probe.unsubscribe_url)
        if link < 0:
            return True  # a template without the link: only the size counts
        end = html.find("</a>", link)
        end = link + len(probe.unsubscribe_url) if end < 0 else end + len("</a>")
        return self._filled_size(html[:end], probe) <= self.settings.unsubscribe_within

    def _filled_size(self, html: str, probe: TokenSet) -> int:
        """The UTF-8 size of ``html`` with every token filled by the longest value compose accepts."""
        # The footer note holds the title (the editor's own, any length) and an address.
        most = {**FILLED_MAX, "footer_note": 200 + 6 * len(self.settings.title) + FILLED_MAX["email"]}
        size = len(html.encode("utf-8"))
        for name, token in probe.pairs():
            # A token this table does not know yet is counted as the longest kind.
            size += html.count(token) * (most.get(name, max(most.values())) - len(token))
        return size

    def _shrink(self, issue: Issue, chosen: frozenset[str], key: str, subject: str, total: int, probe: TokenSet) -> int:
        """How many entries fit under ``clip_bytes`` with the "N more in the web version" notice."""
        tokens = dict(probe.pairs())
        # Size grows with the number of entries kept: binary-search the largest that fits.
        lo, hi = 0, total - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            html = self._html_for(self._view(issue, chosen, mid), key, tokens, subject)
            if self._fits(html, probe):
                lo = mid
            else:
                hi = mid - 1
        if lo == 0 and not self._fits(self._html_for(self._view(issue, chosen, 0), key, tokens, subject), probe):
            raise RenderError(
                f"issue {issue.key} ({key}): the HTML template is over {self.settings.clip_bytes} bytes"
                f" (or puts the unsubscribe link past {self.settings.unsubscribe_within}) with no entry in it;"
                " Gmail would clip it"
            )
        log.warning(
            "issue %s (%s) is longer than %d bytes: the email keeps %d of %d entries "
            "and links to the web version for the rest",
            issue.key,
            key,
            self.settings.clip_bytes,
            lo,
            total,
        )
        return lo
