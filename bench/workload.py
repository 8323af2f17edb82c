"""Generated inputs for the benchmarks: feeds, a working folder, subscriber lists.

Everything is deterministic (seeded by index), so two runs measure the same
thing. Nothing here times anything.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

from digest.scaffold import scaffold

WEEK = "2018-W02"
THEMES = ("Cyber defence", "AI policy", "Internet governance", "Digital trade")
#: Theme choices cycled over subscribers: several distinct variants, plus "all".
CHOICES = (
    "",
    "Cyber defence",
    "AI policy;Cyber defence",
    "Internet governance;Digital trade",
    "Digital trade",
    "AI policy",
    "Cyber defence;Internet governance;Digital trade",
    "AI policy;Internet governance",
)
_WORDS = (
    "policy",
    "export",
    "control",
    "network",
    "resilience",
    "incident",
    "response",
    "standards",
    "cloud",
    "supply",
    "chain",
    "governance",
    "treaty",
    "norms",
    "attribution",
    "encryption",
    "semiconductor",
    "research",
    "budget",
    "market",
    "data",
    "privacy",
    "regulator",
    "operators",
    "platform",
    "ministry",
    "agency",
    "report",
    "analysts",
    "infrastructure",
)


def words(seed: int, count: int) -> str:
    return " ".join(_WORDS[(seed * 7 + i * 13 + i * i) % len(_WORDS)] for i in range(count))


def rss_feed(name: str, items: int, *, start: dt.datetime, themes: tuple[str, ...], paragraphs: int) -> bytes:
    """An RSS 2.0 feed of ``items`` entries, one hour apart from ``start``, themes by category."""
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>',
        f"<title>{escape(name)}</title><link>https://example.org/{escape(name)}</link>",
        f"<description>{escape(name)} bench feed</description>",
    ]
    for i in range(items):
        when = start + dt.timedelta(hours=i)
        body = "".join(f"<p>{escape(words(i * 31 + p, 40).capitalize())}.</p>" for p in range(paragraphs))
        theme = themes[i % len(themes)]
        out.append(
            "<item>"
            f"<title>{escape(words(i, 6).capitalize())} ({i})</title>"
            f"<link>https://example.org/{escape(name)}/{i}</link>"
            f"<guid>https://example.org/{escape(name)}/{i}</guid>"
            f"<pubDate>{email.utils.format_datetime(when)}</pubDate>"
            f"<dc:creator>Analyst Number{i % 5} Smith</dc:creator>"
            f"<category>{escape(theme)}</category>"
            f"<description>{escape(words(i + 3, 30).capitalize())}.</description>"
            f"<content:encoded><![CDATA[{body}]]></content:encoded>"
            "</item>"
        )
    out.append("</channel></rss>")
    return "\n".join(out).encode("utf-8")


def config_text(*, port: int, connections: int, sources: str, concurrency: int = 8) -> str:
    themes = "\n".join(f'[[themes]]\nname = "{t}"\ncategories = ["{t}"]\n' for t in THEMES)
    return f"""[digest]
title = "Bench Weekly"
timezone = "UTC"
database = "sqlite:///digest.db"
base_url = "http://127.0.0.1:8025"
secret = "bench-secret-not-for-production"

[fetch]
concurrency = {concurrency}
allow_private = ["127.0.0.1"]  # the feed server of bench.fetch is on loopback

[sender]
from = "Bench Weekly <digest@example.org>"
transport = "smtp"
host = "127.0.0.1"
port = {port}
connections = {connections}

{sources}
{themes}"""


def send_folder(root: Path) -> Path:
    """A working folder (from ``digest init``) with one local feed of 20 entries in 4 themes."""
    folder = root / "send"
    if folder.exists():
        shutil.rmtree(folder)
    scaffold(folder)
    for sample in (folder / "sources").iterdir():
        sample.unlink()
    (folder / "subscribers" / "subscribers.csv").unlink()
    start = dt.datetime(2018, 1, 8, 6, tzinfo=dt.UTC)
    (folder / "sources" / "bench.rss.xml").write_bytes(rss_feed("bench", 20, start=start, themes=THEMES, paragraphs=4))
    write_config(folder, port=25, connections=4)
    return folder


def write_config(folder: Path, *, port: int, connections: int) -> Path:
    path = folder / "digest.toml"
    source = '[[sources]]\nname = "Bench feed"\nkind = "feed"\nurl = "sources/bench.rss.xml"\n'
    path.write_text(config_text(port=port, connections=connections, sources=source), encoding="utf-8")
    return path


def write_subscribers(folder: Path, n: int) -> None:
    """``n`` subscribers with theme choices cycling through ``CHOICES``.

    Written 100,000 rows at a time, so a million cost no million-line list.
    """
    step = 100_000
    with (folder / "subscribers" / "subscribers.csv").open("w", encoding="utf-8", newline="") as out:
        out.write("email,name,themes,timezone\n")
        for start in range(0, n, step):
            rows = range(start, min(n, start + step))
            out.write("".join(f"reader{i:07d}@example.org,Reader {i},{CHOICES[i % len(CHOICES)]},\n" for i in rows))


def fresh_database(folder: Path, template: Path) -> None:
    """Replace the folder's database with a copy of ``template`` (entries only, no ledger)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        (folder / f"digest.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, folder / "digest.db")


def fetched_template(folder: Path) -> Path:
    """Fetch the folder's feed once and keep the database as a template for every run."""
    from digest import pipeline
    from digest.config import load_config

    config = load_config(folder / "digest.toml")
    with pipeline.open_store(config) as store:
        lines = pipeline.fetch_all(config, store, dt.datetime.now(dt.UTC))
    if sum(line.counts.new for line in lines) != 20:
        raise RuntimeError(f"the bench feed gave {[line.counts for line in lines]}, not 20 new entries")
    template = folder.parent / "template.db"
    shutil.copyfile(folder / "digest.db", template)
    return template
