"""The operator's dashboard in the preview: issues, send rate, sources and subscribers as inline SVG.

The page is server-rendered: every chart is ``<svg>`` markup coloured
through classes of ``/_static/site.css`` (the page's CSP allows no inline
style and no script is needed). It shows the same values as ``digest issues
--json`` and ``digest sources --json`` (the backend reads them with the same
store calls), and every count is also in a ``data-count`` attribute and a
``<title>`` tooltip. Names (sources, themes, issue keys) are hostile input:
each goes through ``pages._e`` where it enters the markup.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from digest.web.pages import _e, layout

#: The ledger states in the order they are stacked (and listed by ``digest issues --json``).
STATES = ("sent", "pending", "claimed", "failed-temporary", "failed-permanent", "unknown", "skipped")
#: Fetch statuses and the word shown for each in a mark's tooltip and the legend.
FETCH_STATUSES = {"ok": "ok", "not_modified": "not modified", "failed": "failed", "broken": "broken"}
#: Fetches shown per source.
STRIP = 12

_W = 960  # the width of every chart's coordinate system; the SVG scales to the page
_LABEL = 190  # the column of names left of the bars
_COLUMNS = 240  # a longer send is drawn in columns of several minutes each
_TICKS = 16  # sends of up to this many minutes name every minute on the axis
_NAME_MAX = 26  # longer names are cut in the chart (the tooltip has them whole)


@dataclass(frozen=True, slots=True)
class IssueBar:
    """One issue: its key, state (as ``digest issues`` says it) and its ledger counts in ``STATES`` order."""

    key: str
    state: str
    counts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)


@dataclass(frozen=True, slots=True)
class FetchMark:
    """One fetch of a source: its status, the items the source had (``None`` if unknown), when, and why it failed."""

    status: str
    items: int | None
    at: dt.datetime
    error: str = ""


@dataclass(frozen=True, slots=True)
class SourceStrip:
    """One source and its last fetches, newest first (as ``SourceReport.history``)."""

    name: str
    kind: str
    failures: int
    alert: bool
    marks: tuple[FetchMark, ...]


@dataclass(frozen=True, slots=True)
class Dashboard:
    """Everything the dashboard shows.

    ``rate`` is messages sent per minute (UTC minute, count) for ``rate_issue``,
    the newest issue; ``by_status`` and ``by_theme`` count subscribers (list
    files and web sign-ups; ``by_theme`` counts the active ones who get each
    theme, so one who takes every theme counts in each).
    """

    issues: tuple[IssueBar, ...]
    rate_issue: str | None
    rate: tuple[tuple[dt.datetime, int], ...]
    sources: tuple[SourceStrip, ...]
    by_status: tuple[tuple[str, int], ...]
    by_theme: tuple[tuple[str, int], ...]
    alert_after: int
    title: str = ""


@runtime_checkable
class DashboardSource(Protocol):
    """What the dashboard needs from the backend."""

    def dashboard(self) -> Dashboard:
        """The dashboard's values, read now."""
        ...


def _cut(name: str) -> str:
    return name if len(name) <= _NAME_MAX else name[: _NAME_MAX - 1] + "…"


def _svg(height: int, label: str, body: str, cls: str, width: int = _W) -> str:
    return (
        f'<svg class="chart {cls}" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{_e(label)}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _name(x: int, y: int, name: str, cls: str = "name") -> str:
    """A name left of its bar: cut to fit, whole in its tooltip."""
    return f'<text class="{cls}" x="{x}" y="{y}"><title>{_e(name)}</title>{_e(_cut(name))}</text>'


def _legend(items: list[tuple[str, str]]) -> str:
    """``(css class, label)`` pairs as a row of swatches."""
    cells = "".join(f'<li><span class="sw {cls}"></span>{_e(label)}</li>' for cls, label in items)
    return f'<ul class="legend">{cells}</ul>'


def issues_chart(issues: tuple[IssueBar, ...]) -> str:
    """Every issue as one horizontal bar stacked by ledger state, newest on top."""
    if not issues:
        return (
            '<p class="empty">No issue has been frozen yet '
            "(<code>digest send</code> or <code>digest run</code> freezes one).</p>"
        )
    row, bar_h, top = 30, 18, 6
    left, right = _LABEL, _W - 230
    most = max((i.total for i in issues), default=0) or 1
    parts = []
    for n, issue in enumerate(issues):
        y = top + n * row
        parts.append(f'<g class="issue" data-issue="{_e(issue.key)}" data-total="{issue.total}">')
        parts.append(_name(0, y + 14, issue.key))
        x = float(left)
        for state, count in issue.counts:
            if not count:
                continue
            w = (right - left) * count / most
            parts.append(
                f'<rect class="seg st-{state}" data-state="{state}" data-count="{count}" x="{x:.1f}" y="{y}" '
                f'width="{max(w, 1.5):.1f}" height="{bar_h}" rx="2">'
                f"<title>{_e(issue.key)}: {state} {count}</title></rect>"
            )
            x += w
        if not issue.total:
            parts.append(f'<rect class="seg st-none" x="{left}" y="{y}" width="2" height="{bar_h}"/>')
        summary = f"{issue.total} recipients · {issue.state}"
        parts.append(
            f'<text class="note st-word-{_e(issue.state.replace(" ", "-"))}" x="{right + 12}" y="{y + 14}">'
            f"{_e(summary)}</text>"
        )
        parts.append("</g>")
    height = top + len(issues) * row
    legend = _legend([(f"st-{s}", s) for s in STATES])
    return legend + _svg(height, "Ledger states of every issue", "".join(parts), "issues")


def columns(
    rate: tuple[tuple[dt.datetime, int], ...], most: int = _COLUMNS
) -> tuple[int, list[tuple[dt.datetime, int]]]:
    """``rate`` in at most ``most`` columns: the minutes each column sums, and (its first minute, count) each."""
    width = max(1, -(-len(rate) // most))
    return width, [(rate[i][0], sum(n for _, n in rate[i : i + width])) for i in range(0, len(rate), width)]


def rate_chart(key: str | None, rate: tuple[tuple[dt.datetime, int], ...]) -> str:
    """Messages sent per minute over the newest issue's send, as columns (of several minutes for a long send)."""
    if key is None:
        return '<p class="empty">No issue yet.</p>'
    if not rate:
        return f'<p class="empty">Nothing of {_e(key)} has been sent yet.</p>'
    height, left, bottom, top = 160, 56, 28, 14
    plot_w, plot_h = _W - left - 16, height - bottom - top
    width, cols = columns(rate)
    peak = max(n for _, n in cols) or 1
    step = plot_w / len(cols)
    # A short send is a few columns, not a few slabs across the chart; each is centred in its minute.
    bar = max(min(step * 0.8, 40.0), 0.8)
    parts = [
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{_W - 16}" y2="{top + plot_h}"/>',
        f'<line class="grid" x1="{left}" y1="{top}" x2="{_W - 16}" y2="{top}"/>',
        f'<text class="tick" x="{left - 8}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text class="tick" x="{left - 8}" y="{top + plot_h + 4}" text-anchor="end">0</text>',
    ]
    y = height - 8
    few = len(cols) <= _TICKS
    span = f"{width} minutes from " if width > 1 else ""
    for n, (minute, count) in enumerate(cols):
        h = plot_h * count / peak
        middle = left + (n + 0.5) * step
        parts.append(
            f'<rect class="col" data-minute="{minute.isoformat()}" data-minutes="{width}" data-count="{count}" '
            f'x="{middle - bar / 2:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
            f'height="{h:.1f}"><title>{span}{minute:%Y-%m-%d %H:%M} UTC: {count} sent</title></rect>'
        )
        if few:  # every minute named under its column
            parts.append(f'<text class="tick" x="{middle:.1f}" y="{y}" text-anchor="middle">{minute:%H:%M}</text>')
    first, last = rate[0][0], rate[-1][0]
    if not few:
        shape = "%H:%M" if first.date() == last.date() else "%m-%d %H:%M"
        parts.append(f'<text class="tick" x="{left}" y="{y}">{first.strftime(shape)}</text>')
        parts.append(f'<text class="tick" x="{_W - 16}" y="{y}" text-anchor="end">{last.strftime(shape)}</text>')
    total = sum(n for _, n in rate)
    minutes = len(rate)
    busiest = max(n for _, n in rate)
    note = (
        f'<p class="caption">Issue <strong>{_e(key)}</strong>: {total} sent over {minutes} '
        f"minute{'s' if minutes != 1 else ''} from {first:%Y-%m-%d %H:%M} UTC, at most {busiest} in a minute"
        + (f"; each column sums {width} minutes" if width > 1 else "")
        + ".</p>"
    )
    return note + _svg(height, f"Messages of {key} sent per minute", "".join(parts), "rate")


def sources_chart(sources: tuple[SourceStrip, ...], alert_after: int) -> str:
    """Each source's last fetches as a strip of marks (oldest left), the item count in each."""
    if not sources:
        return '<p class="empty">No source is configured.</p>'
    row, cell, gap, top = 34, 44, 4, 4
    left = _LABEL + 10
    parts = []
    for n, src in enumerate(sources):
        y = top + n * row
        cls = " alert" if src.alert else ""
        parts.append(f'<g class="source{cls}" data-source="{_e(src.name)}" data-failures="{src.failures}">')
        parts.append(_name(0, y + 17, src.name))
        shown = list(reversed(src.marks[:STRIP]))
        for i in range(STRIP):
            x = left + i * (cell + gap)
            slot = i - (STRIP - len(shown))
            if slot < 0:
                parts.append(f'<rect class="mark none" x="{x}" y="{y}" width="{cell}" height="24" rx="3"/>')
                continue
            mark = shown[slot]
            items = "–" if mark.items is None else str(mark.items)
            word = FETCH_STATUSES.get(mark.status, mark.status)
            tip = f"{mark.at:%Y-%m-%d %H:%M} UTC: {word}, {items} items" + (f" – {mark.error}" if mark.error else "")
            data = "" if mark.items is None else f' data-items="{mark.items}"'
            parts.append(
                f'<g class="mark fs-{_e(mark.status)}" data-status="{_e(mark.status)}"{data}><title>{_e(tip)}</title>'
                f'<rect x="{x}" y="{y}" width="{cell}" height="24" rx="3"/>'
                f'<text x="{x + cell / 2:.0f}" y="{y + 16}" text-anchor="middle">{_e(items)}</text></g>'
            )
        x = left + STRIP * (cell + gap) + 8
        if src.failures:
            word = f"{src.failures} failure{'s' if src.failures != 1 else ''} in a row"
            parts.append(f'<text class="note{" warn" if src.alert else ""}" x="{x}" y="{y + 17}">{word}</text>')
        parts.append("</g>")
    legend = _legend([(f"fs-{k}", v) for k, v in FETCH_STATUSES.items()])
    caption = (
        f'<p class="caption">Last {STRIP} fetches per source, newest on the right; the number is the items '
        f"the source listed. Sources that failed {alert_after} runs in a row are marked.</p>"
    )
    height = top + len(sources) * row
    return caption + legend + _svg(height, "Last fetches of every source", "".join(parts), "sources")


def counts_chart(label: str, counts: tuple[tuple[str, int], ...], kind: str) -> str:
    """Named counts as horizontal bars (subscribers by status or theme)."""
    if not counts:
        return '<p class="empty">None.</p>'
    # Half the page wide: drawn in a narrower coordinate system, so its text keeps its size.
    row, top, width, left = 28, 4, 480, 190
    right = width - 50
    most = max(n for _, n in counts) or 1
    parts = []
    for n, (name, count) in enumerate(counts):
        y = top + n * row
        w = (right - left) * count / most
        parts.append(
            f'<g class="count" data-{kind}="{_e(name)}" data-count="{count}">{_name(0, y + 14, name)}'
            f'<rect class="bar {kind}-{_e(name) if kind == "status" else "any"}" x="{left}" y="{y}" '
            f'width="{max(w, 1.5):.1f}" height="18" rx="2"><title>{_e(name)}: {count}</title></rect>'
            f'<text class="note" x="{left + w + 8:.1f}" y="{y + 14}">{count}</text></g>'
        )
    return _svg(top + len(counts) * row, label, "".join(parts), f"counts {kind}", width)


def dashboard_page(site: str, dash: Dashboard) -> str:
    """The whole dashboard page."""
    site = dash.title or site
    sections = [
        ("Issues", "Every issue's ledger, by state", issues_chart(dash.issues)),
        ("Send rate", "Messages sent per minute, newest issue", rate_chart(dash.rate_issue, dash.rate)),
        ("Sources", "Fetch history", sources_chart(dash.sources, dash.alert_after)),
    ]
    panels = "".join(
        f'<section class="panel" id="{_e(title.lower().replace(" ", "-"))}">'
        f"<h2>{_e(title)} <small>{_e(sub)}</small></h2>"
        f"{chart}</section>\n"
        for title, sub, chart in sections
    )
    panels += (
        '<section class="panel" id="subscribers"><h2>Subscribers <small>list files and web sign-ups</small></h2>'
        '<div class="pair"><div><h3>By status</h3>'
        + counts_chart("Subscribers by status", dash.by_status, "status")
        + "</div><div><h3>By theme <small>(active)</small></h3>"
        + counts_chart("Active subscribers by theme", dash.by_theme, "theme")
        + "</div></div></section>\n"
    )
    body = (
        '<div class="dash">\n<header class="bar">\n'
        f"<h1>{_e(site)} <small>dashboard</small></h1>\n"
        '<nav><a href="/">Issue preview</a></nav>\n</header>\n'
        f"<main>\n{panels}</main>\n</div>"
    )
    return layout(f"Dashboard – {site}", body)
