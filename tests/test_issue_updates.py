"""``[updates] policy = "section"``: an entry that changed materially after it went out appears once under "Updated"."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.models import Entry
from digest.pipeline.carry import MATERIAL_BELOW, normalised, similarity
from tests.data.carry.site import Site, day, eid, messages_for, monday
from tests.fixtures.smtp_server import SmtpServer

TYPO = "The ministry published a long report on network resilience and incident repsonse for operators."
FIXED = TYPO.replace("repsonse", "response")
FIRST = "The agency issued a short note on export controls."
REWRITTEN = "The agency withdrew the note; a new treaty on data privacy replaces the export rules from March."


def sent_then_changed(tmp_path: Path, port: int, policy: str) -> Site:
    extra = f'[updates]\npolicy = "{policy}"' if policy else ""
    site = Site(tmp_path, smtp_port=port, extra=extra)
    site.publish("typo", day(2018, 2, 2), title="Report on resilience", summary=TYPO)
    site.publish("story", day(2018, 2, 3), title="Export controls note", summary=FIRST)
    assert site.run(monday(2018, 3)).sent is not None
    site.publish("typo", day(2018, 2, 2), title="Report on resilience", summary=FIXED)
    site.publish("story", day(2018, 2, 3), title="Export controls note", summary=REWRITTEN)
    site.publish("w3", day(2018, 3, 2), title="Week three story")
    return site


def test_a_material_change_appears_once_under_updated(tmp_path: Path, smtp_server: SmtpServer) -> None:
    site = sent_then_changed(tmp_path, smtp_server.port, "section")
    mark = len(smtp_server.messages)
    assert site.run(monday(2018, 4)).sent is not None
    ((_, html, text),) = messages_for(smtp_server, mark)
    assert "UPDATED (1)" in text and REWRITTEN[:40] in text
    assert "Updated" in html and "Export controls note" in html
    assert "Report on resilience" not in text  # a typo fix is not an update
    assert [e.id for e in site.frozen()["2018-W03"].updates[0].entries] == [eid("story")]
    assert [e.id for e in site.frozen()["2018-W03"].entries] == [eid("w3")]

    site.publish("w4", day(2018, 4, 2))
    mark = len(smtp_server.messages)
    assert site.run(monday(2018, 5)).sent is not None
    ((_, html, text),) = messages_for(smtp_server, mark)
    assert "UPDATED" not in text and "Export controls note" not in text + html  # once


def test_by_default_updates_are_ignored(tmp_path: Path, smtp_server: SmtpServer) -> None:
    site = sent_then_changed(tmp_path, smtp_server.port, "")
    mark = len(smtp_server.messages)
    assert site.run(monday(2018, 4)).sent is not None
    ((_, html, text),) = messages_for(smtp_server, mark)
    assert "UPDATED" not in text and "Export controls note" not in text
    assert "Updated" not in html
    assert site.frozen()["2018-W03"].updates == ()


def entry(summary: str, title: str = "Title", content: str = "") -> Entry:
    return Entry(id="e", source="s", title=title, summary=summary, content=content)


@pytest.mark.parametrize(
    ("before", "after", "material"),
    [
        (entry(TYPO), entry(FIXED), False),
        (entry(FIXED), entry(FIXED + " "), False),  # whitespace
        (entry("Same words."), entry("same, WORDS!"), False),  # case and punctuation
        (entry(FIRST), entry(REWRITTEN), True),
        (entry(""), entry("Now there is a whole paragraph where nothing was before."), True),
        (entry("", content="<p>Hi</p>"), entry("", content="<p>Hi</p><script>x()</script><p>lots more</p>"), True),
    ],
)
def test_what_counts_as_material(before: Entry, after: Entry, material: bool) -> None:
    assert (similarity(before, after) < MATERIAL_BELOW) is material


def test_normalised_text_is_bounded_and_drops_markup() -> None:
    huge = entry("word " * 100_000, content="<b>" * 10_000)
    assert len(normalised(huge)) <= 4000
    assert "<" not in normalised(entry("", content="<a href='x'>link</a>"))
