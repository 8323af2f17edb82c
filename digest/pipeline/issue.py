"""From stored entries to an issue: weeks, themes, audience, rendered variants, files."""

from __future__ import annotations

import datetime as dt
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from digest import dedup, grouping, placeholders, subscribers, tokens
from digest.compose import ComposeSettings, MessageTemplate, Recipient
from digest.compose import default_list_id as compose_default_list_id
from digest.config import Config
from digest.errors import ConfigError, IssueHeld, TooFewEntries
from digest.models import (
    TOP_STORIES,
    Entry,
    IsoWeek,
    Issue,
    Rendered,
    Subscriber,
)
from digest.render import Renderer, RenderSettings, variant_key
from digest.store import Store

log = logging.getLogger(__name__)


# --- entries, weeks and the issue --------------------------------------------


def source_themes(config: Config) -> dict[str, str]:
    return {s.name: s.theme for s in config.sources if s.theme}


def describe(config: Config, entries: Sequence[Entry]) -> list[tuple[Entry, str, IsoWeek]]:
    """Each entry with its primary theme and its week, for ``digest entries``."""
    tz = config.digest.tz
    defaults = source_themes(config)
    return [(e, grouping.theme_of(e, config.themes, defaults), IsoWeek.of(e.when(), tz)) for e in entries]


def credits(config: Config, store: Store, entries: Sequence[Entry]) -> dict[str, dedup.Credit]:
    """Each entry's story sources and primary, for ``digest entries --json``.

    Duplicates are grouped week by week, as the weekly issue groups them,
    over every stored entry of the weeks concerned (so ``--source`` does not
    hide a duplicate's primary).
    """
    tz = config.digest.tz
    weeks = sorted({IsoWeek.of(e.when(), tz) for e in entries})
    if not weeks:
        return {}
    start, _ = weeks[0].bounds(tz)
    _, end = weeks[-1].bounds(tz)
    by_week: dict[IsoWeek, list[Entry]] = {}
    for entry in store.entries(since=start, until=end):
        by_week.setdefault(IsoWeek.of(entry.when(), tz), []).append(entry)
    return dedup.credits((by_week[w] for w in weeks if w in by_week), config.dedup)


def resolve_weeks(
    config: Config, now: dt.datetime, *, week: str | None = None, since: dt.date | None = None
) -> tuple[IsoWeek, ...]:
    """The weeks an issue covers: one ``week``, every week from ``since`` up to now's, or the last complete one."""
    tz = config.digest.tz
    if week is not None:
        return (IsoWeek.parse(week),)
    if since is not None:
        return tuple(grouping.weeks_between(IsoWeek.of(since), IsoWeek.of(now, tz)))
    return (grouping.last_complete_week(now, tz),)


def make_issue(config: Config, store: Store, weeks: Sequence[IsoWeek], *, edition: bool = True) -> Issue:
    """The issue for ``weeks`` as it would go out now, carried entries and edition included (no state change)."""
    # Imported here: the carry planner uses this module's helpers.
    from digest.pipeline.carry import plan_issue

    return plan_issue(config, store, weeks, edition=edition).issue


def editions_dir(config: Config) -> Path:
    """Where the edition files of issues live: ``[digest] editions``, by default ``editions/`` beside the config."""
    return config.editions_dir


def renderer_for(config: Config) -> Renderer:
    templates = config.templates_dir
    return Renderer(
        RenderSettings(
            title=config.digest.title,
            base_url=config.digest.base_url,
            tz=config.digest.tz,
            templates_dir=templates if templates.is_dir() else None,
            themes=tuple(t.name for t in config.themes),
            max_entries=config.issue.max_entries,
        )
    )


@dataclass(frozen=True, slots=True)
class Audience:
    """Who gets which variant of an issue."""

    assignments: tuple[tuple[Subscriber, str | None], ...]
    problems: tuple[str, ...] = ()

    @property
    def no_match(self) -> int:
        return sum(1 for _, v in self.assignments if v is None)


def selection(sub: Subscriber, issue: Issue) -> frozenset[str] | None:
    """The themes of ``issue`` that ``sub`` gets; None when none of them.

    An edition's "Top stories" go to everyone, whatever their themes.
    """
    themes = frozenset(t for t in issue.themes if t == TOP_STORIES or sub.wants(t))
    return themes or None


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Cyclic garbage collection paused while the subscribers are read (they form no cycles).

    Each collection walks every object built so far: over a million rows
    that was an eighth of the time before the first message.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def audience(config: Config, store: Store, issue: Issue) -> Audience:
    with _no_cycle_collection():
        return _audience(config, store, issue)


def _audience(config: Config, store: Store, issue: Issue) -> Audience:
    loaded = subscribers.load_lists(config.subscribers_dir, [t.name for t in config.themes] or None)
    # Confirmed web sign-ups join the list rows; theme choices from /p/ apply (store.people).
    active = subscribers.active_subscribers(store.join_lists(loaded.subscribers), store.subscriber_status())
    # A subscriber's variant depends on their theme choice only: worked out once per distinct choice.
    by_choice: dict[frozenset[str], str | None] = {}
    rows: list[tuple[Subscriber, str | None]] = []
    for sub in active:
        if sub.themes not in by_choice:
            sel = selection(sub, issue)
            by_choice[sub.themes] = None if sel is None else variant_key(sel, issue.themes)
        rows.append((sub, by_choice[sub.themes]))
    return Audience(tuple(rows), loaded.problems)


@dataclass(frozen=True, slots=True)
class Built:
    """An issue with its rendered variants, ready to compose."""

    issue: Issue
    variants: dict[str, Rendered]
    audience: Audience
    date: dt.datetime
    warnings: tuple[str, ...] = ()


def build(config: Config, store: Store, issue: Issue, now: dt.datetime) -> Built:
    """Render every variant ``issue`` needs for the current subscribers (no state changes)."""
    aud = audience(config, store, issue)
    renderer = renderer_for(config)
    wanted: dict[str, frozenset[str] | None] = {}
    for s, v in aud.assignments:
        if v is not None and v not in wanted:
            wanted[v] = selection(s, issue)
    wanted.setdefault(variant_key(None, issue.themes), None)
    variants = renderer.variants(issue, [sel or frozenset() for sel in wanted.values()])
    return Built(issue, variants, aud, now, aud.problems)


def newest_week(config: Config, store: Store) -> IsoWeek | None:
    """The latest week that has stored entries, or ``None`` when nothing is stored."""
    latest = store.latest_entry()
    return None if latest is None else IsoWeek.of(latest.when(), config.digest.tz)


def no_entries(config: Config, store: Store, key: str, command: str) -> TooFewEntries:
    """The error of ``digest build`` or ``send`` for an issue with no entries, naming where the entries are.

    "no entries in 2018-W09; the newest week with entries is 2018-W03 (digest build --week 2018-W03)".
    """
    newest = newest_week(config, store)
    if newest is None:
        hint = "no entries are stored yet (digest fetch gathers them)"
    else:
        hint = f"the newest week with entries is {newest} (digest {command} --week {newest})"
    return TooFewEntries(f"no entries in {key}; {hint}")


def check_size(config: Config, issue: Issue) -> None:
    """Raise unless ``issue`` goes out: ``TooFewEntries`` when empty, ``IssueHeld`` when thin.

    A week with fewer than ``[issue] min_entries`` entries is held back and
    its entries roll into the next issue, unless its oldest entry (carried or
    its own) is ``max_hold_weeks`` before the issue's week: then whatever
    there is goes out, as the next issue could no longer carry it.
    """
    count = len(issue.entries)
    minimum = config.issue.min_entries
    if count >= max(minimum, 1):
        return
    if count == 0:
        raise TooFewEntries(f"issue {issue.key} has 0 entries, fewer than min_entries = {minimum}; nothing to build")
    first = min(issue.weeks)
    oldest = min([*(week for _, week in issue.carried), *(s.week for s in issue.sections)])
    age = (first.start - oldest.start).days // 7
    if age >= config.issue.max_hold_weeks:
        return
    latest = IsoWeek.of(oldest.start + dt.timedelta(weeks=config.issue.max_hold_weeks))
    raise IssueHeld(
        f"issue {issue.key} has {count} entries, fewer than min_entries = {minimum}; held: "
        f"they go out with a later issue ({latest} at the latest)"
    )


def compose_settings(config: Config, date: dt.datetime) -> ComposeSettings:
    key = b""
    if config.sender.dkim_key is not None:
        key = config.sender.dkim_key.read_bytes()
    return ComposeSettings(
        from_=config.sender.from_,
        list_id=config.digest.list_id or default_list_id(config),
        unsubscribe_mailto=config.sender.unsubscribe_mailto,
        dkim_selector=config.sender.dkim_selector,
        dkim_key=key or None,
        date=date,
        title=config.digest.title,
    )


def default_list_id(config: Config) -> str:
    return compose_default_list_id(config.digest.title, config.sender.from_)


def recipients(config: Config, *, strict: bool = False) -> Callable[[Subscriber], Recipient]:
    """Subscriber → Recipient with a signed unsubscribe URL; the per-list values are worked out once.

    ``strict``: for messages that really go out, a configured secret is required (see ``secret``).
    """
    key = secret(config, strict=strict)
    list_id, base_url = config.digest.list_id or default_list_id(config), config.digest.base_url

    def make(sub: Subscriber) -> Recipient:
        token = tokens.make_token(key, sub.email, list_id)
        prefs = tokens.make_token(key, sub.email, list_id, tokens.PREFERENCES)
        return Recipient(
            sub.email, sub.name, tokens.unsubscribe_url(base_url, token), tokens.preferences_url(base_url, prefs)
        )

    return make


def recipient(config: Config, sub: Subscriber) -> Recipient:
    return recipients(config)(sub)


def personal_copy(config: Config, rendered: Rendered, sub: Subscriber) -> placeholders.Personal:
    """``rendered`` as ``sub`` reads it (subject, HTML, text), with their signed unsubscribe and preferences links."""
    rcpt = recipient(config, sub)
    values = placeholders.values_for(
        sub.name, sub.email, rcpt.unsubscribe_url, title=config.digest.title, preferences_url=rcpt.preferences_url
    )
    return placeholders.personalise(rendered, values)


def web_copy(config: Config, rendered: Rendered) -> placeholders.Personal:
    """``rendered`` as the public web version shows it: no subscriber's name, address or link."""
    return placeholders.personalise(rendered, placeholders.web_values(config.digest.title, config.digest.base_url))


def secret(config: Config, *, strict: bool = False) -> str:
    """The key of unsubscribe tokens.

    Without a configured secret, previews and builds use a per-folder
    stand-in, which anyone who guesses the folder could use to forge
    unsubscribe links; ``strict`` (sending, the unsubscribe endpoint)
    refuses it instead.
    """
    if config.digest.secret:
        return config.digest.secret
    if strict:
        raise ConfigError(
            f"{config.path}: digest.secret: not set, so unsubscribe links could be forged; "
            "set DIGEST_SECRET (or digest.secret) to a long random string"
        )
    return "digest-insecure-default:" + str(config.base_dir)


# --- build to files ------------------------------------------------------------


def write_build(config: Config, built: Built, out: Path) -> list[Path]:
    """Write ``index.html`` and, per variant, ``.html``, ``.txt`` and a sample ``.eml``."""
    out.mkdir(parents=True, exist_ok=True)
    settings = compose_settings(config, built.date)
    written: list[Path] = []
    firsts: dict[str, Subscriber] = {}
    for sub, v in built.audience.assignments:
        if v is not None:
            firsts.setdefault(v, sub)
    rows = []
    for key, rendered in sorted(built.variants.items()):
        sub = firsts.get(key) or Subscriber(email="reader@example.org", name="Reader")
        msg = MessageTemplate.build(rendered, settings).personalise(recipient(config, sub))
        mine = personal_copy(config, rendered, sub)
        for suffix, data in ((".html", mine.html.encode()), (".txt", mine.text.encode()), (".eml", msg.data)):
            path = out / f"{built.issue.key}.{key}{suffix}"
            path.write_bytes(data)
            written.append(path)
        who = sum(1 for _, v in built.audience.assignments if v == key)
        rows.append((key, rendered.themes, mine.subject, who))
    index = out / "index.html"
    index.write_text(_index_html(built, rows), encoding="utf-8")
    written.insert(0, index)
    return written


#: The look of ``index.html``: inline, so the page opens from disk with nothing else beside it.
_INDEX_CSS = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;background:#f4f6f9;margin:0}
main{max-width:46rem;margin:2.5rem auto;padding:0 1rem}
h1{font-size:1.6rem;margin:0 0 .25rem}
.meta{color:#52606d;margin:0 0 1.5rem}
ul{list-style:none;padding:0;margin:0}
li{background:#fff;border:1px solid #d9e2ec;border-radius:8px;padding:1rem 1.25rem;margin:0 0 .75rem}
.themes{font-size:1.1rem;font-weight:600;color:#0b4f8a;text-decoration:none}
.themes:hover{text-decoration:underline}
.subject{margin:.25rem 0;color:#1f2933}
.who{color:#52606d;font-size:.9rem}
li p{margin:.25rem 0}
.files{margin:.5rem 0 0}
.files a{color:#0b4f8a;margin-right:1rem;font-size:.9rem}
"""


def _index_html(built: Built, rows: list[tuple[str, tuple[str, ...], str, int]]) -> str:
    """A page of the build's variants: per variant its themes (linking its HTML), subject, audience and files.

    Every value (title, themes, subjects: the config's and the feeds' words) is escaped.
    """
    import html as h

    issue = built.issue
    stem = h.escape(issue.key, quote=True)

    def item(key: str, themes: tuple[str, ...], subject: str, n: int) -> str:
        base = f"{stem}.{h.escape(key, quote=True)}"
        who = "no subscriber yet" if n == 0 else f"{n} subscriber{'s' if n != 1 else ''}"
        return (
            f'<li><a class="themes" href="{base}.html">{h.escape(", ".join(themes) or "All themes")}</a>'
            f'<p class="subject">{h.escape(subject)}</p>'
            f'<p class="who">{who} · variant <code>{h.escape(key)}</code></p>'
            f'<p class="files"><a href="{base}.html">HTML</a><a href="{base}.txt">Text</a>'
            f'<a href="{base}.eml">Message (.eml)</a></p></li>'
        )

    items = "\n".join(item(*row) for row in rows)
    title = f"{h.escape(issue.title)} · {stem}"
    entries, sections = len(issue.entries), len(issue.sections)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_INDEX_CSS}</style></head>\n"
        f"<body><main><h1>{title}</h1>"
        f'<p class="meta">{entries} entr{"ies" if entries != 1 else "y"} in {sections} section'
        f"{'s' if sections != 1 else ''} · {len(rows)} variant{'s' if len(rows) != 1 else ''}</p>"
        f"<ul>\n{items}\n</ul></main></body></html>\n"
    )
