"""The benchmark modules import, and their servers work (no timing is asserted)."""

from __future__ import annotations

import datetime as dt
import smtplib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench import fetch, render, report, send, workload


def test_sink_takes_messages_and_counts_them() -> None:
    body = b"Subject: hi\r\n\r\n.starts with a dot\r\n" + b"x" * 70_000 + b"\r\nend\r\n"
    with send.Sink() as sink:
        smtp = smtplib.SMTP("127.0.0.1", sink.port, local_hostname="example.org")
        assert smtp.ehlo()[0] == 250
        assert smtp.has_extn("pipelining")
        smtp.sendmail("a@example.org", ["b@example.org"], body)
        smtp.sendmail("a@example.org", ["c@example.org"], b"")
        assert smtp.rset()[0] == 250
        assert sink.repeats() == 0
        smtp.sendmail("a@example.org", ["B@example.org"], b"again")  # the same recipient, respelt
        smtp.quit()
        assert sink.count() == 3 and sink.repeats() == 1


def test_feed_server_answers_304_to_its_etag() -> None:
    with fetch.FeedServer(2, 3, 0.0) as server:
        with urllib.request.urlopen(server.url(1)) as resp:
            etag = resp.headers["ETag"]
            assert b"<item>" in resp.read()
        request = urllib.request.Request(server.url(1), headers={"If-None-Match": etag})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request)
        assert err.value.code == 304
        assert server.counts() == (1, 1)


def test_generated_feed_parses_into_themed_entries() -> None:
    from digest.models import Source, SourceKind
    from digest.sources.feed import parse_feed

    start = dt.datetime(2018, 1, 8, tzinfo=dt.UTC)
    data = workload.rss_feed("f", 8, start=start, themes=workload.THEMES, paragraphs=1)
    entries = parse_feed(
        Source("f", SourceKind.FEED, "https://example.org/f"),
        data,
        "application/rss+xml",
        "https://example.org/f",
        dt.UTC,
    )
    assert len(entries) == 8
    assert {t for e in entries for t in e.tags} == set(workload.THEMES)


def test_report_statuses_reads_the_fetch_table() -> None:
    text = "│ Feed 0 │ 0 │ 0 │ 0 │ not_modified │ 0.2s │\n│ Feed 1 │ 50 │ 0 │ 0 │ ok │ 0.3s │\n9 new; 1 failed\n"
    assert fetch.report_statuses(text) == {"not_modified": 1, "ok": 1}


def test_selections_are_distinct_and_table_prints_ratios() -> None:
    names = tuple("abcdefghij")
    chosen = render.selections(names, 1000)
    assert len(set(chosen)) == 1000 and all(0 < len(s) < 10 for s in chosen)
    base = report.Figure("base", "msg/s", [1.0, 2.0, 3.0])
    fig = report.Figure("fast", "msg/s", [50.0, 60.0])
    fig.compare(base, at_least=25)
    assert fig.ratio == 27.5 and fig.met
    assert "27.5x" in report.table([base, fig])


def test_previous_figures_reads_a_results_file_and_shrugs_at_a_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "results.json"
    fig = report.Figure("digest send 10,000", "msg/s", [700.0, 800.0])
    report.write_results(good, [fig, report.Figure("empty", "s")], {"mode": "full"})
    assert report.previous_figures(good) == {"digest send 10,000": 750.0}
    assert "750" in report.table([fig], report.previous_figures(good)).splitlines()[-1]
    for hostile in ("", "{", '{"figures": 3}', '{"figures": [{"name": "x"}]}', "[]"):
        bad = tmp_path / "bad.json"
        bad.write_text(hostile, encoding="utf-8")
        assert report.previous_figures(bad) == {}
    assert report.previous_figures(tmp_path / "missing.json") == {}


def test_store_size_simulation_prunes_the_ledger_and_entries(tmp_path: Path) -> None:
    from bench import store_size

    kept = store_size.simulate(tmp_path / "a.db", weeks=6, subscribers=20, keep=dt.timedelta(days=14))
    grown = store_size.simulate(tmp_path / "b.db", weeks=6, subscribers=20, keep=None)
    assert grown["ledger_rows"] == 6 * 20 and grown["entries"] == 6 * 50
    # Issues finished more than 14 days before the last prune are counts now; so are their entries gone.
    assert kept["ledger_rows"] < grown["ledger_rows"] and kept["entries"] < grown["entries"]


def test_million_judges_its_targets_at_a_million_only_and_writes_the_subscribers(tmp_path: Path) -> None:
    from bench import million

    run = {"elapsed": 800.0, "rate": 1250.0, "steady_rate": 1300.0, "maxrss_mb": 1600.0, "before_first": 12.0}
    total, steady, peak, first = million.figures_of(million.MILLION, run)
    assert (total.met, peak.met, first.met, steady.met) == (True, False, True, None)
    assert peak.target == "< 1.5 GB" and first.target == "< 30 s"
    small = million.figures_of(20_000, run)
    assert [f.met for f in small] == [None] * 4 and small[0].target == "< 15 min (at 1M)"
    assert "send to 1,000,000: peak RSS" in report.table([peak])
    (tmp_path / "subscribers").mkdir()
    workload.write_subscribers(tmp_path, 100_003)
    lines = (tmp_path / "subscribers" / "subscribers.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 100_004 and lines[0] == "email,name,themes,timezone"
    assert lines[-1] == f"reader0100002@example.org,Reader 100002,{workload.CHOICES[100_002 % 8]},"


def test_the_refetch_must_answer_304_everywhere_serve_no_body_and_list_no_entry(tmp_path: Path) -> None:
    with fetch.FeedServer(3, 4, 0.0) as server:
        folder = fetch.digest_folder(tmp_path, server, 3)
        # Never fetched: every feed sends its body, so the "all 304" check must refuse the run.
        with pytest.raises(RuntimeError, match="'bodies_served': 3"):
            fetch.time_refetch(folder, server, 3)
        _, seen = fetch.time_refetch(folder, server, 3)
    assert seen == {"statuses": {"not_modified": 3}, "bodies_served": 0, "not_modified_served": 3, "entries_listed": 0}


def test_report_entries_adds_up_the_listed_entries() -> None:
    text = "│ Feed 0 │ 0 │ 0 │ 0 │ not_modified │ 0.2s │\n│ Feed 1 │ 50 │ 1 │ 2 │ ok │ 0.3s │\n"
    assert fetch.report_entries(text) == 53
