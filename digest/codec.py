"""JSON forms of the model values: ``digest entries --json`` and frozen issues.

The entry form is the CLI contract: ``id, source, title, link, summary,
authors: [{name, affiliation}], published`` (ISO 8601 with offset), plus
``theme`` and ``week`` when the caller knows them, and ``sources`` and
``duplicate_of`` when the caller has grouped duplicates. A frozen issue's
entries also carry ``content`` and ``also`` (the other sources of the
story: ``[{source, link, entry_id}]``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from digest.models import Author, Entry, IsoWeek, Issue, Section, Sighting


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
    also = [{"source": a.source, "link": a.link, "entry_id": a.entry_id} for a in entry.also]
    return entry_to_dict(entry) | {"content": entry.content, "also": also}


def issue_to_json(issue: Issue) -> str:
    """A frozen issue, byte-stable for the same issue."""
    data = {
        "key": issue.key,
        "title": issue.title,
        "weeks": [str(w) for w in issue.weeks],
        "sections": [
            {
                "theme": s.theme,
                "week": str(s.week),
                "entries": [_frozen_entry(e) for e in s.entries],
            }
            for s in issue.sections
        ],
    }
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def issue_from_json(payload: str) -> Issue:
    data = json.loads(payload)
    return Issue(
        key=data["key"],
        title=data["title"],
        weeks=tuple(IsoWeek.parse(w) for w in data["weeks"]),
        sections=tuple(
            Section(
                theme=s["theme"],
                week=IsoWeek.parse(s["week"]),
                entries=tuple(entry_from_dict(e) for e in s["entries"]),
            )
            for s in data["sections"]
        ),
    )
