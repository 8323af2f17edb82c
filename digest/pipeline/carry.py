"""What an issue carries: its own weeks' entries, earlier weeks' unsent ones, and updated ones.

Every entry goes out in exactly one issue. An issue takes the entries of its
weeks that no other issue recorded, plus the unsent entries of up to
``[issue] max_hold_weeks`` weeks before its first week (published after
their week's issue froze, held back with a thin week, or missed in an
outage); those are marked with their own week. Older unsent entries are
recorded as expired (reported once, never carried). Weeks before the
digest's first issue (or first held week) are its sources' history, not
part of the digest: they are neither carried nor expired.

Ages are measured against the issue's week, never against today, so a late
``digest send --week W`` carries what ``W`` would have carried.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from digest import editions, grouping
from digest.codec import issue_from_json
from digest.config import Config
from digest.models import Entry, IsoWeek, Issue, Section
from digest.pipeline.issue import source_themes
from digest.store import IssueEntry, Store, content_hash

#: Below this similarity of normalised text an update is material; a typo fix stays above it.
MATERIAL_BELOW = 0.9
#: Characters of normalised text compared (the comparison is quadratic in the worst case).
_COMPARED = 4000
_TAG = re.compile(r"<[^>]*>")
_NON_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class Planned:
    """An issue with what its freeze records and what the operator should hear.

    ``expired`` are unsent entries too old to carry; ``updated`` the earlier
    entries shown again under "Updated".
    """

    issue: Issue
    expired: tuple[Entry, ...] = ()
    updated: tuple[Entry, ...] = ()
    warnings: tuple[str, ...] = ()
    #: Entries of other sources folded into an entry the issue shows (one story, many sources).
    folded: tuple[Entry, ...] = ()
    #: Entries the edition skipped: recorded with this issue, so they are not carried into the next.
    skipped: tuple[Entry, ...] = ()

    def records(self) -> list[IssueEntry]:
        """The ``issue_entries`` rows the freeze writes (worked out only when freezing)."""
        carried = {eid: str(week) for eid, week in self.issue.carried}
        rows = [IssueEntry(e.id, content_hash(e), carried_from=carried.get(e.id)) for e in self.issue.entries]
        # A duplicate went out as part of its primary: it is in this issue too, never "late" next week.
        rows += [IssueEntry(e.id, content_hash(e), carried_from=carried.get(e.id)) for e in self.folded]
        rows += [IssueEntry(e.id, content_hash(e), carried_from=carried.get(e.id)) for e in self.skipped]
        rows += [IssueEntry(e.id, content_hash(e), expired=True) for e in self.expired]
        rows += [IssueEntry(e.id, content_hash(e), updated=True) for e in self.updated]
        return rows


def weeks_before(week: IsoWeek, count: int) -> IsoWeek:
    """The week ``count`` weeks before ``week``."""
    return IsoWeek.of(week.start - dt.timedelta(weeks=count))


def weeks_apart(older: IsoWeek, newer: IsoWeek) -> int:
    """How many weeks ``older`` lies before ``newer`` (negative when after)."""
    return (newer.start - older.start).days // 7


def first_week(store: Store) -> IsoWeek | None:
    """The first week the digest covered (frozen or held), or None before any issue."""
    key = store.first_issue_key()
    return IsoWeek.parse(key.partition("..")[0]) if key else None


def plan_issue(config: Config, store: Store, weeks: Sequence[IsoWeek], *, edition: bool = True) -> Planned:
    """The issue for ``weeks`` with the earlier weeks' unsent entries it carries (no state change).

    With ``edition`` (the default), the issue's edition file is applied
    (``digest.editions``); one that names an unknown entry or key raises
    ``ConfigError``. ``digest edit`` plans without it, to list every entry.
    """
    tz = config.digest.tz
    key = grouping.issue_key(weeks)
    first, last = min(weeks), max(weeks)
    started = first_week(store)
    window = first
    if started is not None and started < first:
        window = max(started, weeks_before(first, config.issue.max_hold_weeks))
    since, _ = window.bounds(tz)
    own_start, _ = first.bounds(tz)
    _, until = last.bounds(tz)
    candidates = store.unissued_entries(since, until, key)
    # Before the first week's start is before the first week: cheaper than a week per entry.
    place = {e.id: last for e in candidates if e.when() < own_start}
    defaults = source_themes(config)
    issue = grouping.build_issue(
        candidates,
        title=config.digest.title,
        weeks=weeks,
        themes=config.themes,
        source_themes=defaults,
        tz=tz,
        key=key,
        place=place,
        dedup=config.dedup,
    )
    issue = grouping.fold_thin_sections(issue, config.issue.min_per_theme)
    by_id = {e.id: e for e in candidates}
    folded = tuple(by_id[i] for e in issue.entries for i in e.carried_ids[1:] if i in by_id)
    own_week = {e.id: grouping.week_of(e, tz) for e in candidates if e.id in place}
    carried = tuple((e.id, own_week[e.id]) for e in issue.entries if e.id in own_week)
    expired: list[Entry] = []
    if started is not None and started < window:
        expired = store.unissued_entries(started.bounds(tz)[0], since, key)
    updated: list[Entry] = []
    if config.updates.policy == "section":
        updated = material_updates(store, key)
    updates = _update_sections(config, updated, last)
    issue = Issue(issue.key, issue.title, issue.weeks, issue.sections, carried, updates)
    skipped: tuple[Entry, ...] = ()
    if edition:
        shaped = editions.load_edition(config.editions_dir, key)
        if shaped is not None:
            before = issue.entries
            issue = editions.apply_edition(shaped, issue)
            kept = {e.id for e in issue.entries}
            skipped = tuple(e for e in before if e.id not in kept)
    warnings: tuple[str, ...] = ()
    if expired:
        weeks_hit = sorted({str(grouping.week_of(e, tz)) for e in expired})
        shown = ", ".join(weeks_hit[:5]) + (", ..." if len(weeks_hit) > 5 else "")
        warnings = (
            f"{len(expired)} unsent entries of {shown} expired: older than max_hold_weeks = "
            f"{config.issue.max_hold_weeks} before {first}, they are not carried into issue {key}",
        )
    return Planned(issue, tuple(expired), tuple(updated), warnings, folded, skipped)


def normalised(entry: Entry) -> str:
    """Title, summary and content as lowercase words, tags and punctuation gone."""
    raw = " ".join((entry.title, entry.summary, _TAG.sub(" ", entry.content)))
    return " ".join(_NON_WORD.sub(" ", raw.casefold()).split())[:_COMPARED]


def similarity(a: Entry, b: Entry) -> float:
    """How alike two versions of an entry read, 0 to 1, on their normalised text."""
    left, right = normalised(a), normalised(b)
    if left == right:
        return 1.0
    return difflib.SequenceMatcher(None, left, right, autojunk=False).ratio()


def material_updates(store: Store, key: str) -> list[Entry]:
    """Entries sent in earlier issues whose text changed materially since they were last shown."""
    shown: dict[str, dict[str, Entry]] = {}
    out: list[Entry] = []
    for change in store.changed_entries(key):
        if change.shown_in not in shown:
            shown[change.shown_in] = _shown_entries(store, change.shown_in)
        before = shown[change.shown_in].get(change.entry.id)
        if before is None or similarity(before, change.entry) < MATERIAL_BELOW:
            out.append(change.entry)
    return out


def _shown_entries(store: Store, key: str) -> dict[str, Entry]:
    frozen = store.frozen_issue(key)
    if frozen is None:
        return {}
    issue = issue_from_json(frozen.payload)
    return {e.id: e for s in (*issue.sections, *issue.updates) for e in s.entries}


def _update_sections(config: Config, updated: Sequence[Entry], week: IsoWeek) -> tuple[Section, ...]:
    """Updated entries by theme (config order, ``Other`` last), newest first."""
    if not updated:
        return ()
    grouped = grouping.build_issue(
        updated,
        title="",
        weeks=None,
        themes=config.themes,
        source_themes=source_themes(config),
        tz=config.digest.tz,
        key="updates",
        place={e.id: week for e in updated},
    )
    return grouped.sections
