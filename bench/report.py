"""Figures, their statistics, the printed table and ``results.json``.

A ``Figure`` is one measured quantity with its repeats; ``ratio`` compares
its median with another figure's median from the same run, and ``target``
says what the ratio (or the value) must reach.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured quantity: its repeats, and optionally a ratio to a baseline and a target."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    ratio: float | None = None
    ratio_of: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def compare(self, base: Figure, *, at_least: float | None = None, label: str = "") -> None:
        """Set ``ratio`` to this median over ``base``'s; with ``at_least``, judge the target."""
        self.ratio = self.median / base.median if base.median else None
        self.ratio_of = base.name
        if at_least is not None:
            self.target = label or f">= {at_least:g}x {base.name}"
            self.met = self.ratio is not None and self.ratio >= at_least


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value:  # NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def previous_figures(path: Path) -> dict[str, float]:
    """Medians of the committed run in ``path`` by figure name (empty when there is none)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        medians = {f["name"]: float(f["median"]) for f in data["figures"] if f.get("median") is not None}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    return {name: m for name, m in medians.items() if m == m}  # NaN: a figure with no value


def table(figures: list[Figure], previous: dict[str, float] | None = None) -> str:
    """The table printed at the end: figure, median, min, max, ratio, target, and the previous run's median."""
    previous = previous or {}
    rows = [("figure", "unit", "median", "min", "max", "n", "ratio", "target", "previous")]
    for f in figures:
        ratio = "" if f.ratio is None else f"{f.ratio:.3g}x"
        verdict = "" if f.met is None else (" MET" if f.met else " MISSED")
        rows.append(
            (
                f.name,
                f.unit,
                fmt(f.median),
                fmt(min(f.values) if f.values else None),
                fmt(max(f.values) if f.values else None),
                str(len(f.values)),
                ratio,
                (f.target + verdict).strip(),
                fmt(previous.get(f.name)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [c.ljust(w) if i in (0, 1, 7) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "cpus": nproc or str(os.cpu_count()),
        "model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def write_results(path: Path, figures: list[Figure], meta: dict[str, Any]) -> None:
    data = {
        "meta": meta,
        "figures": [
            {**asdict(f), "median": f.median, "min": min(f.values, default=None), "max": max(f.values, default=None)}
            for f in figures
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
