"""JSON forms of the model values: ``digest entries --json`` and frozen issues.

The entry form is the CLI contract: ``id, source, title, link, summary,
authors: [{name, affiliation}], published`` (ISO 8601 with offset), plus
``theme`` and ``week`` when the caller knows them, and ``sources`` and
``duplicate_of`` when the caller has grouped duplicates. A frozen issue's
entries also carry ``content`` and ``also`` (the other sources of the
story: ``[{source, link, entry_id}]``). A frozen issue shaped by an edition
file carries ``editorial``: ``{sha256, subject, headline, preheader,
note_html, note_text}`` (absent otherwise, so older payloads keep their bytes).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from digest.models import Author, Editorial, Entry, IsoWeek, Issue, Section, Sighting


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _when(raw: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(raw) if raw else None


def entry_to_dict(entry: Entry, *, theme: str | None = None, week: IsoWeek | None = None) -> dict[str, Any]:
    """The JSON object of one entry, in a stable key order."""
    out: dict[str, Any] = {
        "id": entry.id,
        "source": entry.source,
        "title": entry.title,
        "title_derived": entry.title_derived,
        "link": entry.link,
        "summary": entry.summary,
        "authors": [{"name": a.name, "affiliation": a.affiliation} for a in entry.authors],
        "published": _iso(entry.published),
        "first_seen": _iso(entry.first_seen),
        "tags": list(entry.tags),
    }
    if theme is not None:
        out["theme"] = theme
    if week is not None:
        out["week"] = str(week)
    return out


def entry_from_dict(raw: dict[str, Any]) -> Entry:
    return Entry(
        id=raw["id"],
        source=raw["source"],
        title=raw["title"],
        link=raw.get("link"),
        summary=raw.get("summary", ""),
        content=raw.get("content", ""),
        authors=tuple(Author(a["name"], a.get("affiliation", "")) for a in raw.get("authors", [])),
        published=_when(raw.get("published")),
        tags=tuple(raw.get("tags", [])),
        title_derived=bool(raw.get("title_derived", False)),
        first_seen=_when(raw.get("first_seen")),
        also=tuple(Sighting(a["source"], a.get("link"), a.get("entry_id")) for a in raw.get("also", [])),
    )


def _frozen_entry(entry: Entry) -> dict[str, Any]:
    """An entry as a frozen issue keeps it: the JSON form plus content and the other sources."""
    data = entry_to_dict(entry) | {"content": entry.content}
    if entry.also:  # only when there are others, so an entry without freezes to the same bytes as before
        data["also"] = [{"source": a.source, "link": a.link, "entry_id": a.entry_id} for a in entry.also]
    return data


def issue_to_json(issue: Issue) -> str:
    """A frozen issue, byte-stable for the same issue."""
    data: dict[str, Any] = {
        "key": issue.key,
        "title": issue.title,
        "weeks": [str(w) for w in issue.weeks],
        "sections": _sections_to_json(issue.sections),
    }
    # Only when present, so an issue without them freezes to the same bytes as before they existed.
    if issue.carried:
        data["carried"] = {eid: str(week) for eid, week in issue.carried}
    if issue.updates:
        data["updates"] = _sections_to_json(issue.updates)
    if issue.editorial is not None:
        ed = issue.editorial
        data["editorial"] = {
            "sha256": ed.sha256,
            "subject": ed.subject,
            "headline": ed.headline,
            "preheader": ed.preheader,
            "note_html": ed.note_html,
            "note_text": ed.note_text,
        }
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _sections_to_json(sections: tuple[Section, ...]) -> list[dict[str, Any]]:
    return [
        {
            "theme": s.theme,
            "week": str(s.week),
            "entries": [_frozen_entry(e) for e in s.entries],
        }
        for s in sections
    ]


def _sections_from_json(raw: list[dict[str, Any]]) -> tuple[Section, ...]:
    return tuple(
        Section(
            theme=s["theme"],
            week=IsoWeek.parse(s["week"]),
            entries=tuple(entry_from_dict(e) for e in s["entries"]),
        )
        for s in raw
    )


def issue_from_json(payload: str) -> Issue:
    data = json.loads(payload)
    sections = _sections_from_json(data["sections"])
    carried = data.get("carried", {})
    # In section order, so the same payload always gives the same Issue.
    order = [e.id for s in sections for e in s.entries if e.id in carried]
    return Issue(
        key=data["key"],
        title=data["title"],
        weeks=tuple(IsoWeek.parse(w) for w in data["weeks"]),
        sections=sections,
        carried=tuple((eid, IsoWeek.parse(carried[eid])) for eid in order),
        updates=_sections_from_json(data.get("updates", [])),
        editorial=_editorial_from_json(data.get("editorial")),
    )


def _editorial_from_json(raw: dict[str, Any] | None) -> Editorial | None:
    if raw is None:
        return None
    return Editorial(
        sha256=str(raw.get("sha256", "")),
        subject=str(raw.get("subject", "")),
        headline=str(raw.get("headline", "")),
        preheader=str(raw.get("preheader", "")),
        note_html=str(raw.get("note_html", "")),
        note_text=str(raw.get("note_text", "")),
    )
