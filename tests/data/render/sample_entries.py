"""The sample listing as Entries, read by a tiny local parser.

The listing holds records of author lines, a date line and a summary line
(``models.DEFAULT_TEXT_RECORD``). Titles are derived from the summary the
way a text listing without titles does (``digest.sources.text.derive_title``):
the first sentence, or its opening clause, never half a sentence. Dates are midnight in the digest's time zone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path
from zoneinfo import ZoneInfo

from digest.models import Author, Entry, Theme
from digest.sources.text import derive_title

LISTING = Path(__file__).parent.parent / "listings" / "china-us-focus-cyber.txt"
SOURCE = "China-US Focus"
TZ = ZoneInfo("Asia/Shanghai")
_DATE = re.compile(r"^[A-Z][a-z]{2} \d{2}, \d{4}$")

#: Themes for the sample: the TOML proposed for ``digest init`` says the same.
THEMES: tuple[Theme, ...] = (
    Theme(
        name="AI & tech competition",
        keywords=("AI", "innovation"),
        phrases=("artificial intelligence", "tech giants", "Consumer Electronics Show"),
    ),
    Theme(
        name="Cybersecurity",
        keywords=("cybersecurity", "hacking", "espionage", "attribution", "sanctions", "threats"),
        phrases=("strategic stability",),
    ),
    Theme(
        name="Internet governance",
        keywords=("governance", "norms"),
        phrases=("internet governance", "Wuzhen Conference"),
    ),
    Theme(
        name="Digital economy",
        keywords=("e-commerce", "payments", "startups"),
        phrases=("digital economy",),
    ),
)


def _author(line: str) -> Author:
    name, _, affiliation = line.partition(",")
    return Author(name=name.strip(), affiliation=affiliation.strip())


def sample_entries(tz: ZoneInfo = TZ) -> tuple[Entry, ...]:
    """The ten entries of the sample listing, newest first as listed."""
    entries: list[Entry] = []
    authors: list[Author] = []
    lines = [line.strip() for line in LISTING.read_text(encoding="utf-8").splitlines() if line.strip()]
    i = 0
    while i < len(lines):
        line = lines[i]
        if not _DATE.match(line):
            authors.append(_author(line))
            i += 1
            continue
        day = dt.datetime.strptime(line, "%b %d, %Y").replace(tzinfo=tz)
        summary = lines[i + 1].lstrip(": ").strip()
        ident = hashlib.sha256(f"{SOURCE}\n{day.date()}\n{summary}".encode()).hexdigest()[:16]
        entries.append(
            Entry(
                id=ident,
                source=SOURCE,
                title=derive_title(summary),
                summary=summary,
                authors=tuple(authors),
                published=day,
                title_derived=True,
            )
        )
        authors = []
        i += 2
    return tuple(entries)
