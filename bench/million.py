"""``python -m bench.million`` (``make bench-1m``): one issue to a million subscribers, against the targets.

The issue's target 2: 1,000,000 subscribers sent to the local sink (over
the default 4 connections) in under 15 minutes, with peak RSS under 1.5 GB
and under 30 s before the first message. The send is ``pipeline.send_issue``
in a fresh child process (``bench.send``'s ``digest`` kind, as in ``make
bench``), so its ``ru_maxrss`` is that run's alone; the sink's count must
equal the subscribers. Not part of ``make bench`` (it takes about as long
as the rest together).

``--n 20000`` is a development run: the same figures for fewer subscribers
(the targets are judged at 1,000,000 only). ``--profile PATH`` writes the
child's cProfile of the whole ``send_issue`` call. Results go to
``bench/out/results-1m.json`` (``--out``); the table's ``previous`` column
is that file's figure from the run before.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import send, workload
from bench.report import Figure, machine, previous_figures, table, write_results

MILLION = 1_000_000
#: The targets at a million: whole send (s), peak RSS (MB), before the first message (s).
TOTAL_S, PEAK_MB, FIRST_S = 15 * 60, 1.5 * 1024, 30.0


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def figures_of(n: int, r: dict[str, float]) -> list[Figure]:
    """The four figures of one run; targets judged when ``n`` is a million."""
    judged = n == MILLION
    total = Figure(f"send to {n:,}: total", "s", [r["elapsed"]], note="pipeline.send_issue, whole call")
    total.target = f"< {TOTAL_S / 60:g} min"
    steady = Figure(f"send to {n:,}: steady rate", "msg/s", [r["steady_rate"]], note="first to last message")
    steady.extra["end_to_end_rate"] = r["rate"]
    peak = Figure(f"send to {n:,}: peak RSS", "MB", [r["maxrss_mb"]], note="ru_maxrss of the sending process")
    peak.target = f"< {PEAK_MB / 1024:g} GB"
    peak.extra["rss_per_subscriber_kb"] = r["maxrss_mb"] * 1024 / n
    first = Figure(
        f"send to {n:,}: before the first message",
        "s",
        [r["before_first"]],
        note="lists, audience, freeze, render, plan the ledger",
    )
    first.target = f"< {FIRST_S:g} s"
    if judged:
        total.met = r["elapsed"] < TOTAL_S
        peak.met = r["maxrss_mb"] < PEAK_MB
        first.met = r["before_first"] < FIRST_S
    else:
        for fig in (total, peak, first):
            fig.target += " (at 1M)"
    return [total, steady, peak, first]


def run(n: int, connections: int, profile: Path | None) -> dict[str, float]:
    """Prepare a folder with ``n`` subscribers, send the issue to the sink once, check the sink's count."""
    with tempfile.TemporaryDirectory(prefix="digest-bench-1m-") as tmp:
        folder = workload.send_folder(Path(tmp))
        template = workload.fetched_template(folder)
        with send.Sink() as sink:
            started = time.perf_counter()
            send.prepared(folder, template, n, sink.port, connections)
            say(f"{n:,} subscribers written in {time.perf_counter() - started:.1f} s; sending")
            before = sink.count()
            r = send.run_child("digest", folder, profile=profile)
            got = sink.count() - before
    if r["sent"] != n or got != n:
        raise RuntimeError(f"send to {n:,}: sent {r['sent']}, the sink took {got}")
    return r


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.million", description=__doc__)
    parser.add_argument("--n", type=int, default=MILLION, help="subscribers (targets are judged at 1,000,000)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--profile", type=Path, help="write the sending child's cProfile here")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "results-1m.json")
    args = parser.parse_args()
    meta = machine()
    meta.update(mode="million", n=args.n, connections=args.connections)
    say(f"{meta['cpus']} x {meta['model']}, Python {meta['python']}, load {meta['loadavg_at_start']}")
    previous = previous_figures(args.out)
    started = time.perf_counter()
    r = run(args.n, args.connections, args.profile)
    meta["wall_s"] = time.perf_counter() - started
    meta["loadavg_at_end"] = list(os.getloadavg())
    meta["child"] = r
    figures = figures_of(args.n, r)
    print(table(figures, previous))
    write_results(args.out, figures, meta)
    say(f"done in {meta['wall_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
