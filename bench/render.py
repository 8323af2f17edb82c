"""The render path: ``digest build`` of the sample issue, and many variants of a 10-theme issue.

``time_build`` runs ``digest init`` + ``digest fetch`` (bundled local
sources, no network) once, then times ``digest build --week 2018-W02`` as a
whole process. ``time_variants`` renders ``count`` distinct theme selections
of a generated 10-theme issue through ``Renderer.variants`` in this process
(Jinja2, then CSS inlining once per variant).
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.workload import words

DIGEST = str(Path(sys.executable).with_name("digest"))
SAMPLE_WEEK = "2018-W02"


def sample_folder(root: Path) -> Path:
    """``digest init`` + ``digest fetch``: the sample working folder with its entries stored."""
    folder = root / "render-sample"
    if folder.exists():
        shutil.rmtree(folder)
    for args in (["init", str(folder)], ["--config", str(folder / "digest.toml"), "fetch"]):
        subprocess.run([DIGEST, *args], check=True, capture_output=True)
    return folder


def time_build(folder: Path) -> tuple[float, int]:
    """Seconds for one ``digest build --week 2018-W02`` process, and how many variants it wrote."""
    out = folder / "out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [DIGEST, "--config", str(folder / "digest.toml"), "build", "--week", SAMPLE_WEEK, "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"digest build failed:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    m = re.search(r"(\d+) variant\(s\)", done.stdout)
    return elapsed, int(m.group(1)) if m else 0


def ten_theme_issue() -> tuple[object, tuple[str, ...]]:
    """An issue of 10 themes with 3 entries each (about 40 KB of HTML for all themes)."""
    from digest.models import Author, Entry, IsoWeek, Issue, Section

    week = IsoWeek(2018, 2)
    names = tuple(f"Theme {chr(ord('A') + i)} {words(i, 2)}" for i in range(10))
    start = dt.datetime(2018, 1, 8, 6, tzinfo=dt.UTC)
    sections = []
    for t, name in enumerate(names):
        entries = tuple(
            Entry(
                id=f"e{t}-{j}",
                source=f"Source {t % 3}",
                title=words(t * 3 + j, 7).capitalize(),
                link=f"https://example.org/{t}/{j}",
                summary=words(t * 11 + j, 50).capitalize() + ".",
                authors=(Author(f"Analyst Number{j} Smith", "Institute"),),
                published=start + dt.timedelta(hours=t * 3 + j),
            )
            for j in range(3)
        )
        sections.append(Section(name, week, entries))
    return Issue("2018-W02", "Bench Weekly", (week,), tuple(sections)), names


def selections(names: tuple[str, ...], count: int) -> list[frozenset[str]]:
    """``count`` distinct proper, non-empty subsets of ``names``, in a fixed shuffled order."""
    subsets = [frozenset(c) for size in range(1, len(names)) for c in itertools.combinations(names, size)]
    random.Random(2018).shuffle(subsets)
    if count > len(subsets):
        raise ValueError(f"only {len(subsets)} distinct selections of {len(names)} themes")
    return subsets[:count]


def time_variants(count: int) -> tuple[float, int]:
    """Seconds to render ``count`` distinct variants, and how many came back."""
    from digest.models import Issue
    from digest.render import Renderer, RenderSettings

    issue, names = ten_theme_issue()
    assert isinstance(issue, Issue)
    renderer = Renderer(
        RenderSettings(
            title="Bench Weekly", base_url="http://127.0.0.1:8025", tz="UTC", templates_dir=None, themes=names
        )
    )
    renderer.render_variant(issue, None)  # warm the template and CSS caches, as a long run would be
    chosen = selections(names, count)
    start = time.perf_counter()
    out = renderer.variants(issue, chosen)
    return time.perf_counter() - start, len(out)
