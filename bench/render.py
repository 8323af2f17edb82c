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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.workload import words

if TYPE_CHECKING:
    from digest.models import TokenSet
    from digest.render import Renderer, RenderSettings

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


def reference_inline(document: str) -> str:
    """The inlining every variant went through before: a fresh ``Premailer`` for each document."""
    from premailer import Premailer

    from digest.render.inline import _OPTIONS, _drop_imports

    # digest's own premailer options: the reference differs in how it inlines, not in what.
    inlined = Premailer(_drop_imports(document), **_OPTIONS).transform()
    return reference_serialize(inlined)


def reference_serialize(document: str) -> str:
    """``inline.serialize`` as it was: every text node and attribute value through ``html.escape``."""
    import html

    from lxml import etree
    from lxml import html as lxml_html

    from digest.render.inline import _RAW_TEXT, _VOID

    def write(el: etree._Element, out: list[str]) -> None:
        if el.tag is etree.Comment:
            out.append(f"<!--{el.text or ''}-->")
        elif isinstance(el.tag, str):
            tag = el.tag
            attrs = "".join(f' {name}="{html.escape(value, quote=True)}"' for name, value in el.attrib.items())
            out.append(f"<{tag}{attrs}>")
            if tag not in _VOID:
                if el.text:
                    out.append(el.text if tag in _RAW_TEXT else html.escape(el.text, quote=True))
                for child in el:
                    write(child, out)
                out.append(f"</{tag}>")
        if el.tail:
            out.append(html.escape(el.tail, quote=True))

    out: list[str] = ["<!DOCTYPE html>\n"]
    write(lxml_html.document_fromstring(document), out)
    out.append("\n")
    return "".join(out)


def reference_wrap(text: str, width: int = 72, indent: str = "", first: str | None = None) -> str:
    """The text templates' ``wrap`` filter before it remembered its answers (the same function, uncached)."""
    from digest.render.environment import _wrap_str

    return str(_wrap_str.__wrapped__(str(text), width, indent, first))


class _ReferenceInliner:
    def inline(self, document: str) -> str:
        return reference_inline(document)


def reference_renderer(settings: RenderSettings, draw_tokens: Callable[[], TokenSet] | None = None) -> Renderer:
    """A ``Renderer`` on the reference path (see the module docstring)."""
    from digest.render import Renderer

    renderer = Renderer(settings) if draw_tokens is None else Renderer(settings, draw_tokens=draw_tokens)
    renderer._inliner = _ReferenceInliner()  # type: ignore[assignment]
    renderer.env.filters["wrap"] = reference_wrap  # filters are looked up at each render
    return renderer


def time_variants(count: int, *, reference: bool = False) -> tuple[float, int]:
    """Seconds to render ``count`` distinct variants, and how many came back."""
    from digest.models import Issue
    from digest.render import Renderer, RenderSettings

    issue, names = ten_theme_issue()
    assert isinstance(issue, Issue)
    settings = RenderSettings(
        title="Bench Weekly", base_url="http://127.0.0.1:8025", tz="UTC", templates_dir=None, themes=names
    )
    renderer = reference_renderer(settings) if reference else Renderer(settings)
    renderer.render_variant(issue, None)  # warm the template and CSS caches, as a long run would be
    chosen = selections(names, count)
    start = time.perf_counter()
    out = renderer.variants(issue, chosen)
    return time.perf_counter() - start, len(out)
