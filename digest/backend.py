"""The web app's ``Backend``: previews built from the working folder, unsubscribes into the store.

Sign-ups and preferences come from ``signup.service.SignupMixin``.

It re-reads the config on every call so that the preview follows the
editor's changes to ``digest.toml``, ``templates/`` and ``subscribers/``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

from digest import editions, grouping, pipeline, placeholders, subscribers, tokens
from digest.codec import issue_from_json
from digest.compose import MessageTemplate
from digest.config import Config, load_config
from digest.errors import DigestError, StoreError
from digest.models import IsoWeek, Subscriber, SubscriberStatus
from digest.render import variant_key
from digest.signup.service import SignupMixin
from digest.store import Store
from digest.web.archive import ArchiveItem
from digest.web.dashboard import STATES, Dashboard, FetchMark, IssueBar, SourceStrip
from digest.web.seam import Preview, PreviewSubscriber, PreviewVariant

SAMPLE_READER = Subscriber(email="reader@example.org", name="Reader")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _rank(order: list[str], value: str) -> int:
    """Where ``value`` stands in ``order`` (after all of it when absent)."""
    return order.index(value) if value in order else len(order)


def _placeable_week(text: str, tz: ZoneInfo) -> IsoWeek:
    """``text`` as a week whose days, neighbours and UTC bounds exist (not 9999-W52, say).

    Raises ``ValueError`` or ``OverflowError`` otherwise.
    """
    week = IsoWeek.parse(text)
    for bound in week.bounds(tz):
        bound.astimezone(dt.UTC)
    week.previous(), week.next()
    return week


class LocalBackend(SignupMixin):
    """Serves the preview of a working folder, records unsubscriptions, sign-ups and preferences."""

    def __init__(
        self,
        config_path: Path,
        *,
        default_week: str | None = None,
        strict_tokens: bool = False,
        now: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        """``strict_tokens``: unsubscribe links need the configured secret (``digest serve``);
        the local preview may use the per-folder stand-in. ``now`` is the clock of sign-ups
        (token expiry, rate limits, consent records) and unsubscribes."""
        self.now = now
        self.config_path = config_path
        self.default_week = default_week
        self.strict_tokens = strict_tokens
        self._lock = threading.Lock()
        # The page, its iframe and the .eml link each ask for the same preview.
        self._cache: dict[tuple[str | None, str, tuple[int, int]], Preview] = {}

    def config(self) -> Config:
        return load_config(self.config_path)

    # -- preview ---------------------------------------------------------------
    def preview(self, week: str | None) -> Preview:
        week = week or self.default_week
        try:
            with self._lock:
                # The next issue moves on at each week boundary, edits or not.
                key = (week, self.fingerprint(), _utcnow().isocalendar()[:2])
                if key not in self._cache:
                    self._cache = {key: self._preview(week)}
                return self._cache[key]
        except DigestError as exc:
            return Preview(issue_key=week or "", weeks=(), variants=(), subscribers=(), error=str(exc))

    def _preview(self, week: str | None) -> Preview:
        config = self.config()
        now = _utcnow()
        with pipeline.open_store(config) as store:
            tz = config.digest.tz
            available = sorted({IsoWeek.of(e.when(), tz) for e in store.entries()}, reverse=True)
            warnings: list[str] = []
            if week is not None:
                try:
                    weeks: tuple[IsoWeek, ...] = (_placeable_week(week, tz),)
                except (ValueError, OverflowError):
                    # A week typed into the URL: said on the page, with the weeks one can pick.
                    return Preview(
                        issue_key=week,
                        weeks=tuple(str(w) for w in available),
                        variants=(),
                        subscribers=(),
                        error=f"no such week {week!r}: weeks look like 2018-W02 and exist in their year",
                        title=config.digest.title,
                    )
            else:
                weeks = pipeline.resolve_weeks(config, now)
                if available and weeks[0] not in available:
                    warnings.append(
                        f"The next issue ({weeks[0]}) has no entries yet; showing {available[0]},"
                        " the newest week with entries."
                    )
                    weeks = (available[0],)
            key = grouping.issue_key(weeks)
            try:
                # Inside: an edition that names an unknown entry is a build error shown on the page.
                issue = pipeline.make_issue(config, store, weeks)
                pipeline.check_size(config, issue)
                built = pipeline.build(config, store, issue, now)
            except StoreError:
                raise  # may clear up by itself (a lock): reported, never cached
            except DigestError as exc:
                # A broken template or subscriber row: the page keeps its week
                # switcher while it shows the error in place of the message.
                return Preview(
                    issue_key=key,
                    weeks=tuple(str(w) for w in available),
                    variants=(),
                    subscribers=(),
                    # A frozen issue goes out as frozen, whatever its edition file says now.
                    warnings=(*warnings, *self._frozen_notice(config, store, key)),
                    error=str(exc),
                    title=config.digest.title,
                )
            warnings += self._frozen_notice(config, store, key)
        settings = pipeline.compose_settings(config, built.date)
        firsts: dict[str, Subscriber] = {}
        for sub, v in built.audience.assignments:
            if v is not None:
                firsts.setdefault(v, sub)
        variants = []
        # The page opens on its first variant: the whole issue, then the theme selections.
        for key, rendered in sorted(built.variants.items(), key=lambda kv: (kv[0] != "all", kv[0])):
            sub = firsts.get(key, SAMPLE_READER)
            eml = MessageTemplate.build(rendered, settings).personalise(pipeline.recipient(config, sub)).data
            mine = pipeline.personal_copy(config, rendered, sub)
            label = ", ".join(rendered.themes) if key != "all" else "All themes"
            variants.append(
                PreviewVariant(
                    key=key, label=label or key, subject=mine.subject, html=mine.html, text=mine.text, eml=eml
                )
            )
        people = tuple(PreviewSubscriber(s.email, s.name, v) for s, v in built.audience.assignments)
        return Preview(
            issue_key=issue.key,
            weeks=tuple(str(w) for w in available),
            variants=tuple(variants),
            subscribers=people,
            warnings=tuple(warnings) + built.warnings,
            title=config.digest.title,
        )

    @staticmethod
    def _frozen_notice(config: Config, store: Store, key: str) -> list[str]:
        """A notice when issue ``key`` is frozen and its edition file changed since (the freeze is what goes out)."""
        frozen = store.frozen_issue(key)
        if frozen is None:
            return []
        applied = issue_from_json(frozen.payload).editorial
        now = editions.edition_sha256(pipeline.editions_dir(config), key)
        if now == (applied.sha256 if applied is not None else ""):
            return []
        at = frozen.frozen_at.astimezone(config.digest.tz).strftime("%Y-%m-%d %H:%M %Z")
        path = editions.edition_path(pipeline.editions_dir(config), key)
        return [f"{path}: edition changed after the issue was frozen at {at}; the frozen issue is what goes out"]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        try:
            h.update(self._entries_version().encode())
            config = self.config()
            paths = [
                self.config_path,
                *self._files(config.templates_dir),
                *self._files(config.subscribers_dir),
                *self._files(config.editions_dir),
            ]
        except DigestError:
            paths = [self.config_path]
        for path in paths:
            try:
                st = path.stat()
            except OSError:
                continue
            h.update(f"{path}:{st.st_mtime_ns}:{st.st_size};".encode())
        return h.hexdigest()[:16]

    def _entries_version(self) -> str:
        with pipeline.open_store(self.config()) as store:
            return store.entries_version()

    @staticmethod
    def _files(folder: Path) -> Iterator[Path]:
        if folder.is_dir():
            yield from sorted(p for p in folder.rglob("*") if p.is_file())

    # -- unsubscribe -------------------------------------------------------------
    def check_token(self, token: str) -> str:
        config = self.config()
        list_id = config.digest.list_id or pipeline.default_list_id(config)
        return tokens.verify_token(pipeline.secret(config, strict=self.strict_tokens), token, list_id)

    def unsubscribe(self, token: str, how: str) -> str:
        email = self.check_token(token)
        config = self.config()
        with pipeline.open_store(config) as store:
            store.set_status(email, SubscriberStatus.UNSUBSCRIBED, self.now(), how)
        return email

    def web_version(self, issue_key: str, variant: str) -> str | None:
        config = self.config()
        with pipeline.open_store(config) as store:
            frozen = store.frozen_issue(issue_key)
        if frozen is None:
            return None
        issue = issue_from_json(frozen.payload)  # a corrupt payload fails loudly here, not in a browser
        for rendered in frozen.variants:
            if rendered.variant == variant:
                # The public copy carries no one's name or address; its unsubscribe link explains how.
                shown = sum(len(s.entries) for s in issue.sections if s.theme in rendered.themes)
                if shown > config.issue.max_entries or "more in the web version" in rendered.html:
                    # The email stopped short ("N more in the web version"): this page shows them all.
                    values = placeholders.web_values(config.digest.title, config.digest.base_url)
                    return pipeline.renderer_for(config).render_web(issue, frozenset(rendered.themes), values.by_key())
                return pipeline.web_copy(config, rendered).html
        return None

    # -- archive -------------------------------------------------------------------
    def _archived(self, config: Config) -> list[tuple[str, dt.datetime]]:
        """Keys and finish times of issues the archive may show, newest first."""
        if config.web.archive != "public":
            return []
        with pipeline.open_store(config) as store:
            summaries = store.issue_summaries()
        out = []
        for s in summaries:
            if s.state not in ("sent", "partly failed") or s.last_sent is None:
                continue  # only issues whose send has finished
            try:
                edition = editions.load_edition(pipeline.editions_dir(config), s.key)
            except DigestError:
                continue  # an edition that does not read cannot say it may be published
            if edition is not None and not edition.archive:
                continue
            out.append((s.key, s.last_sent))
        return out

    def archive_items(self) -> list[ArchiveItem]:
        config = self.config()
        items = []
        with pipeline.open_store(config) as store:
            for key, finished in self._archived(config):
                frozen = store.frozen_issue(key)
                if frozen is None:
                    continue
                issue = issue_from_json(frozen.payload)
                everyone = variant_key(None, issue.themes)
                rendered = next((r for r in frozen.variants if r.variant == everyone), None)
                subject = pipeline.web_copy(config, rendered).subject if rendered else issue.title
                themes = ", ".join(issue.themes)
                summary = f"{len(issue.entries)} entries" + (f": {themes}" if themes else "")
                items.append(ArchiveItem(key, subject, finished, summary))
        return items

    def archive_html(self, key: str) -> str | None:
        config = self.config()
        if key not in {k for k, _ in self._archived(config)}:
            return None
        with pipeline.open_store(config) as store:
            frozen = store.frozen_issue(key)
        if frozen is None:
            return None
        return self.web_version(key, variant_key(None, issue_from_json(frozen.payload).themes))

    # -- dashboard -------------------------------------------------------------------
    def dashboard(self) -> Dashboard:
        """The preview's dashboard, from the same store reads as ``digest issues`` and ``digest sources``."""
        config = self.config()
        themes = [t.name for t in config.themes]
        loaded = subscribers.load_lists(config.subscribers_dir, themes or None)
        with pipeline.open_store(config) as store:
            summaries = store.issue_summaries()
            rate_issue = summaries[0].key if summaries else None
            rate = store.sent_per_minute(rate_issue) if rate_issue is not None else []
            reports = store.source_reports([s.name for s in config.sources])
            status = store.subscriber_status()
            everyone = store.join_lists(loaded.subscribers)
            web = store.web_subscribers()
        issues = tuple(IssueBar(s.key, s.state, tuple((st, s.counts.get(st, 0)) for st in STATES)) for s in summaries)
        alert_after = config.fetch.alert_after
        strips = tuple(
            SourceStrip(
                name=source.name,
                kind=str(source.kind),
                failures=rep.failures,
                alert=rep.alert(alert_after),
                marks=tuple(FetchMark(h.status, h.items, h.fetched_at, h.error) for h in rep.history),
            )
            for source, rep in zip(config.sources, reports, strict=True)
        )
        # As `digest subscribers list` counts them: list rows and confirmed sign-ups, then the unconfirmed.
        by_status: dict[str, int] = {}
        by_theme = dict.fromkeys(themes, 0)
        shown: set[str] = set()
        for sub in everyone:
            shown.add(sub.email.lower())
            state = str(status.get(sub.email.lower(), SubscriberStatus.ACTIVE))
            by_status[state] = by_status.get(state, 0) + 1
            if state == SubscriberStatus.ACTIVE:
                for theme in themes:
                    if not sub.themes or theme in sub.themes:
                        by_theme[theme] += 1
        for w in web:
            if w.email not in shown:
                state = str(status.get(w.email, w.status))
                by_status[state] = by_status.get(state, 0) + 1
        order = [str(s) for s in SubscriberStatus]
        return Dashboard(
            issues=issues,
            rate_issue=rate_issue,
            rate=tuple(rate),
            sources=strips,
            by_status=tuple(sorted(by_status.items(), key=lambda kv: (_rank(order, kv[0]), kv[0]))),
            by_theme=tuple(by_theme.items()),
            alert_after=alert_after,
            title=config.digest.title,
        )
