"""One week with 100,000 entries in one feed: the working folder for timing ``digest build``.

``python -m bench.big_issue DIR [N]`` writes DIR (a folder from ``digest init``
with one local feed of N entries, all in 2018-W02, in four themes). Time the
build with ``/usr/bin/time -v digest --config DIR/digest.toml build --week
2018-W02`` after a ``digest fetch``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import shutil
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from bench.workload import THEMES, words
from digest.scaffold import scaffold


def week_feed(items: int) -> bytes:
    """``items`` RSS entries spread evenly over 8-14 January 2018 (2018-W02)."""
    start = dt.datetime(2018, 1, 8, 0, 0, 1, tzinfo=dt.UTC)
    step = dt.timedelta(days=6, hours=23) / max(items, 1)
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0"><channel><title>Big</title><link>https://example.org/big</link>',
        "<description>one busy week</description>",
    ]
    for i in range(items):
        when = start + step * i
        out.append(
            "<item>"
            f"<title>{escape(words(i, 6).capitalize())} ({i})</title>"
            f"<link>https://example.org/big/{i}</link><guid>https://example.org/big/{i}</guid>"
            f"<pubDate>{email.utils.format_datetime(when)}</pubDate>"
            f"<category>{escape(THEMES[i % len(THEMES)])}</category>"
            f"<description>{escape(words(i + 3, 30).capitalize())}.</description>"
            "</item>"
        )
    out.append("</channel></rss>")
    return "\n".join(out).encode("utf-8")


def make_folder(root: Path, items: int) -> Path:
    """The folder, its feed and its config; returns the config path."""
    if root.exists():
        shutil.rmtree(root)
    scaffold(root)
    for sample in (root / "sources").iterdir():
        sample.unlink()
    (root / "sources" / "big.rss.xml").write_bytes(week_feed(items))
    themes = "\n".join(f'[[themes]]\nname = "{t}"\ncategories = ["{t}"]\n' for t in THEMES)
    config = root / "digest.toml"
    config.write_text(
        f"""[digest]
title = "Big Weekly"
timezone = "UTC"
database = "sqlite:///digest.db"
secret = "bench-secret-not-for-production"

[fetch]
max_bytes = 500000000
deadline = 600

[[sources]]
name = "Big"
kind = "feed"
url = "sources/big.rss.xml"

{themes}""",
        encoding="utf-8",
    )
    return config


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    print(make_folder(folder, count))
