"""The public archive and its Atom feed over real HTTP, after real sends."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from digest import pipeline
from digest.backend import LocalBackend
from digest.models import IsoWeek
from digest.web import create_app
from digest.web.archive import PAGE_SIZE, ArchiveItem, ArchiveOptions, atom_feed
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer
from tests.fixtures.web_server import running

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", ws.SECRET)


def site(tmp_path: Path, smtp_server: SmtpServer, *, feed: str = "summary") -> tuple[Path, list[ws.Row]]:
    people = ws.rows(6)
    extra = f'\n[web]\narchive = "public"\narchive_feed = "{feed}"\n'
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, extra=extra)
    config = ws.load(path)
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        pipeline.send_issue(config, store, (IsoWeek(2018, 1),), clock=clock)
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=clock)
    return path, people


def serve(path: Path, full: bool = False) -> object:
    app = create_app(
        LocalBackend(path, strict_tokens=True),
        title="Cyber Weekly",
        enable_preview=False,
        archive=ArchiveOptions(base_url="https://digest.example.org", full=full),
    )
    return running(app)


def test_archive_pages_and_feed_show_sent_issues_and_nobody(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path, people = site(tmp_path, smtp_server)
    (path.parent / "editions").mkdir()
    with serve(path) as base:  # type: ignore[attr-defined]
        listing = httpx.get(f"{base}/archive/")
        assert listing.status_code == 200
        assert listing.text.index("/archive/2018-W02/") < listing.text.index("/archive/2018-W01/")  # newest first
        page = httpx.get(f"{base}/archive/2018-W02/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        feed = httpx.get(f"{base}/archive.atom")
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/atom+xml")
        root = ET.fromstring(feed.content)
        entries = root.findall(f"{ATOM}entry")
        assert [e.findtext(f"{ATOM}id") for e in entries] == [
            "https://digest.example.org/archive/2018-W02/",
            "https://digest.example.org/archive/2018-W01/",
        ]
        for e in entries:
            dt.datetime.fromisoformat(e.findtext(f"{ATOM}updated") or "")
        # No subscriber's address, name or token anywhere public.
        for body in (listing.text, page.text, feed.text, httpx.get(f"{base}/archive/2018-W01/").text):
            assert "/u/" not in body
            for p in people:
                assert p.email not in body
                if len(p.name) > 3 and p.name != "Plain Reader":
                    assert p.name not in body
        # Conditional requests.
        etag, modified = feed.headers["etag"], feed.headers["last-modified"]
        assert httpx.get(f"{base}/archive.atom", headers={"If-None-Match": etag}).status_code == 304
        assert httpx.get(f"{base}/archive.atom", headers={"If-Modified-Since": modified}).status_code == 304
        assert httpx.get(f"{base}/archive.atom", headers={"If-None-Match": '"other"'}).status_code == 200
        old = "Mon, 01 Jan 2001 00:00:00 GMT"
        assert httpx.get(f"{base}/archive.atom", headers={"If-Modified-Since": old}).status_code == 200
        assert httpx.get(f"{base}/archive.atom", headers={"If-Modified-Since": "garbage"}).status_code == 200
        # An edition can keep an issue out; unknown or hostile keys are 404.
        (path.parent / "editions" / "2018-W01.md").write_text("+++\narchive = false\n+++\n")
        assert httpx.get(f"{base}/archive/2018-W01/").status_code == 404
        assert "2018-W01" not in httpx.get(f"{base}/archive.atom").text
        for bad in ("2018-W09", "..%2f..%2fetc", "%00", "x" * 300):
            assert httpx.get(f"{base}/archive/{bad}/").status_code == 404
        for bad_page in ("0", "-1", "abc", "99", "1" * 50):
            assert httpx.get(f"{base}/archive/?page={bad_page}").status_code == 404


def test_a_full_feed_carries_the_issue_html(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path, people = site(tmp_path, smtp_server, feed="full")
    with serve(path, full=True) as base:  # type: ignore[attr-defined]
        feed = httpx.get(f"{base}/archive.atom").text
    root = ET.fromstring(feed)
    content = root.find(f"{ATOM}entry/{ATOM}content")
    assert content is not None and content.get("type") == "html" and "<table" in (content.text or "")
    assert all(p.email not in feed for p in people) and "/u/" not in feed


def test_an_unfinished_or_unsent_issue_is_not_archived(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(3)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, extra='\n[web]\narchive = "public"\n')
    ws.fetch(path)
    with serve(path) as base:  # type: ignore[attr-defined]
        assert "No issue has been sent yet" in httpx.get(f"{base}/archive/").text
        assert httpx.get(f"{base}/archive/2018-W02/").status_code == 404


def test_the_feed_escapes_hostile_subjects() -> None:
    when = dt.datetime(2018, 1, 16, tzinfo=dt.UTC)
    items = [ArchiveItem("2018-W02", "<script>&</script>]]>", when, "a & b")]
    root = ET.fromstring(atom_feed("T & <T>", "https://x.example", items))
    assert root.findtext(f"{ATOM}title") == "T & <T>"
    assert root.findtext(f"{ATOM}entry/{ATOM}title") == "<script>&</script>]]>"
    assert PAGE_SIZE == 20
