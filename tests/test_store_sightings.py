"""Sightings: one entry id carried by several sources is stored once, its first source kept, the others sighted.

The end-to-end tests fetch two real feeds over the loopback HTTP server with
``digest fetch`` and read them back with ``digest entries --json`` and
``digest build``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from digest.cli import cli
from digest.models import Entry, FetchStatus, Sighting, SourceResult
from digest.store import MIGRATIONS, FetchCounts, Store
from digest.store.schema import entry_sightings
from tests.fixtures.http_server import FeedServer

NOW = dt.datetime(2018, 1, 15, 8, tzinfo=dt.UTC)
LINK = "https://news.example/treasury-hack"


def entry(source: str, *, ident: str = LINK, title: str = "Treasury hacked", link: str | None = LINK) -> Entry:
    return Entry(id=ident, source=source, title=title, link=link, published=dt.datetime(2018, 1, 9, tzinfo=dt.UTC))


def ok(source: str, *entries: Entry) -> SourceResult:
    return SourceResult(source, FetchStatus.OK, entries=entries)


# --- the store ----------------------------------------------------------------------------------


def test_an_id_from_a_second_source_is_a_sighting_and_the_entry_keeps_its_source(any_store: Store) -> None:
    assert any_store.record_fetch(ok("A", entry("A")), NOW) == FetchCounts(new=1)
    assert any_store.record_fetch(ok("B", entry("B", link=LINK + "?utm_source=b")), NOW) == FetchCounts(new=1)
    later = NOW + dt.timedelta(hours=1)
    # Fetched again, in either order, nothing flips and nothing is updated.
    assert any_store.record_fetch(ok("B", entry("B", link=LINK + "?utm_source=b")), later) == FetchCounts(unchanged=1)
    assert any_store.record_fetch(ok("A", entry("A")), later) == FetchCounts(unchanged=1)
    (stored,) = any_store.entries()
    assert stored.source == "A"
    assert stored.also == (Sighting("B", LINK + "?utm_source=b"),)
    assert stored.sources == ("A", "B")


def test_a_changed_sighting_is_updated_and_keeps_its_first_seen(any_store: Store) -> None:
    any_store.record_fetch(ok("A", entry("A")), NOW)
    any_store.record_fetch(ok("B", entry("B")), NOW)
    later = NOW + dt.timedelta(hours=2)
    counts = any_store.record_fetch(ok("B", entry("B", title="Treasury hacked, update", link=LINK + "#b")), later)
    assert counts == FetchCounts(updated=1)
    (stored,) = any_store.entries()
    assert stored.title == "Treasury hacked"  # the entry row is A's, untouched
    assert stored.also == (Sighting("B", LINK + "#b"),)
    with any_store._read() as conn:
        row = conn.execute(select(entry_sightings)).one()
    assert (row.first_seen, row.last_seen, row.title) == (NOW, later, "Treasury hacked, update")


def test_an_unchanged_sighting_stamps_last_seen(any_store: Store) -> None:
    any_store.record_fetch(ok("A", entry("A")), NOW)
    any_store.record_fetch(ok("B", entry("B")), NOW)
    later = NOW + dt.timedelta(days=1)
    any_store.record_fetch(ok("B", entry("B")), later)
    with any_store._read() as conn:
        row = conn.execute(select(entry_sightings)).one()
    assert (row.first_seen, row.last_seen) == (NOW, later)


def test_a_failed_fetch_keeps_the_sightings(any_store: Store) -> None:
    any_store.record_fetch(ok("A", entry("A")), NOW)
    any_store.record_fetch(ok("B", entry("B")), NOW)
    any_store.record_fetch(SourceResult("B", FetchStatus.FAILED, error="boom"), NOW + dt.timedelta(hours=1))
    assert any_store.entries()[0].also == (Sighting("B", LINK),)


def test_entries_of_a_source_include_what_it_only_sighted(any_store: Store) -> None:
    any_store.record_fetch(ok("A", entry("A"), entry("A", ident="a-only", link=None)), NOW)
    any_store.record_fetch(ok("B", entry("B"), entry("B", ident="b-only", link=None)), NOW)
    assert sorted(e.id for e in any_store.entries(source="B")) == sorted([LINK, "b-only"])
    assert sorted(e.id for e in any_store.entries(source="A")) == sorted([LINK, "a-only"])


def test_sightings_change_the_entries_version(any_store: Store) -> None:
    any_store.record_fetch(ok("A", entry("A")), NOW)
    before = any_store.entries_version()
    any_store.record_fetch(ok("B", entry("B")), NOW)
    assert any_store.entries_version() != before


def test_migration_2_adds_sightings_to_a_database_without_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    before = tuple(m for m in MIGRATIONS if m.number != 2)  # every other table, as a database made before it
    with Store.open(url, now=NOW, migrations=before) as old:
        old.record_fetch(ok("A", entry("A")), NOW)
    with Store.open(url, now=NOW) as upgraded:
        assert upgraded.record_fetch(ok("B", entry("B")), NOW) == FetchCounts(new=1)
        assert upgraded.entries()[0].sources == ("A", "B")


# --- digest fetch / entries / build over loopback ------------------------------------------------

CONFIG = """
[digest]
title = "Wire Weekly"
timezone = "UTC"

[fetch]
deadline = 5
connect_timeout = 2
allow_private = ["127.0.0.1"]

[[sources]]
name = "Wire A"
url = "@BASE@/dedup/wire-a.xml"

[[sources]]
name = "Wire B"
url = "@BASE@/dedup/wire-b.xml"
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def report_rows(output: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 6 and cells[0] and cells[1].isdigit():
            rows[cells[0]] = cells[1:4]
    return rows


@pytest.fixture
def wires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feed_server: FeedServer) -> Path:
    (tmp_path / "digest.toml").write_text(CONFIG.replace("@BASE@", feed_server.base), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def entries_json() -> dict[str, dict[str, Any]]:
    result = invoke("entries", "--json")
    assert result.exit_code == 0, result.output
    return {row["title"]: row for row in map(json.loads, result.stdout.splitlines())}


def test_two_feeds_with_one_url_fetched_twice_are_unchanged_the_second_time(wires: Path) -> None:
    first = invoke("fetch")
    assert first.exit_code == 0, first.output
    assert report_rows(first.stdout) == {"Wire A": ["3", "0", "0"], "Wire B": ["3", "0", "0"]}

    second = invoke("fetch")
    assert second.exit_code == 0, second.output
    assert report_rows(second.stdout) == {"Wire A": ["0", "0", "3"], "Wire B": ["0", "0", "3"]}

    with Store.open(f"sqlite:///{wires / 'digest.db'}") as store:
        stored = {e.id: e for e in store.entries()}
    assert len(stored) == 5  # six items, one URL shared
    shared = stored[LINK]
    assert shared.source == "Wire A"
    assert shared.also == (Sighting("Wire B", LINK + "?utm_source=wire-b&utm_medium=rss"),)


def test_entries_json_names_the_sources_and_the_primary(wires: Path) -> None:
    assert invoke("fetch").exit_code == 0
    rows = entries_json()
    assert len(rows) == 5
    shared = rows["Hackers breach US Treasury workstations in major incident"]
    assert (shared["sources"], shared["duplicate_of"]) == (["Wire A", "Wire B"], None)
    primary = rows["Senate passes cyber incident reporting bill"]
    copy = rows["Senate passes cyber incident reporting bill - Wire B"]
    assert (primary["sources"], primary["duplicate_of"]) == (["Wire A", "Wire B"], None)
    assert (copy["sources"], copy["duplicate_of"]) == (["Wire A", "Wire B"], primary["id"])
    alone = rows["New phishing kit proxies cloud logins"]
    assert (alone["sources"], alone["duplicate_of"]) == (["Wire B"], None)
    # --source B still names B's copy as a duplicate of A's entry.
    result = invoke("entries", "--json", "--source", "Wire B")
    only_b = {r["title"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert only_b["Senate passes cyber incident reporting bill - Wire B"]["duplicate_of"] == primary["id"]
    assert "Hackers breach US Treasury workstations in major incident" in only_b


def test_entries_json_without_dedup_still_names_sightings(wires: Path) -> None:
    config = wires / "digest.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n[dedup]\nenabled = false\n", encoding="utf-8")
    assert invoke("fetch").exit_code == 0
    rows = entries_json()
    assert rows["Hackers breach US Treasury workstations in major incident"]["sources"] == ["Wire A", "Wire B"]
    assert all(r["duplicate_of"] is None for r in rows.values())


def test_build_shows_each_story_once_via_both_wires(wires: Path) -> None:
    assert invoke("fetch").exit_code == 0
    result = invoke("build", "--week", "2018-W02", "--out", "out")
    assert result.exit_code == 0, result.output
    text = (wires / "out" / "2018-W02.all.txt").read_text(encoding="utf-8")
    html = (wires / "out" / "2018-W02.all.html").read_text(encoding="utf-8")
    assert text.count("Senate passes cyber incident reporting bill") == 1
    assert text.count("via Wire A, Wire B") == 2
    assert "Also at: Wire B [" in text
    assert "https://b.example/2018/01/senate-reporting-bill" in text
    assert html.count("via Wire A, Wire B") == 2
    assert 'href="https://b.example/2018/01/senate-reporting-bill"' in html
