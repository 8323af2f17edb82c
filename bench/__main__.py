"""``python -m bench``: run every benchmark once, print the table, write ``bench/results.json``.

``--n 1000`` is the quick run (one send size, fewer feeds, repeats and
variants); without it the full run sends to 1k, 10k and 100k subscribers.
Ratios compare figures measured in this same run. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import crash, fetch, render, send, store_size, workload
from bench.report import Figure, machine, previous_figures, table, write_results


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one run."""

    sizes: tuple[int, ...]
    repeats: dict[int, int]
    naive_messages: int
    naive_repeats: int
    raw_repeats: int
    latency_one: int
    latency_many: int
    latency_repeats: int
    feeds: int
    fetch_repeats: int
    r2e_second: bool
    build_repeats: int
    variants: int
    what_if_batch: int
    variant_repeats: int = 3
    #: The reference path renders the first this many of the same selections (scaled to ``variants``).
    reference_variants: int = 200


def plan_for(n: int | None) -> Plan:
    if n is not None:
        return Plan((n,), {n: 2}, 25, 1, 3, 60, 600, 1, 30, 1, False, 1, 60, 16, reference_variants=60)
    return Plan(
        (1_000, 10_000, 100_000), {1_000: 3, 10_000: 2, 100_000: 1}, 60, 3, 3, 150, 2000, 2, 200, 3, True, 3, 1000, 16
    )


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def bench_send(root: Path, plan: Plan, figures: list[Figure]) -> None:
    folder = workload.send_folder(root)
    template = workload.fetched_template(folder)
    by_n: dict[int, Figure] = {}
    with send.Sink() as sink:
        for n in plan.sizes:
            rate = Figure(f"digest send {n:,}", "msg/s", note="pipeline.send_issue end to end, 4 connections")
            steady = Figure(f"digest send {n:,} steady", "msg/s", note="first to last message (no prepare)")
            mem = Figure(f"digest send {n:,} peak RSS", "MB", note="ru_maxrss of the sending process")
            for _ in range(plan.repeats[n]):
                send.prepared(folder, template, n, sink.port, 4)
                before = sink.count()
                r = send.run_child("digest", folder)
                got = sink.count() - before
                if r["sent"] != n or got != n:
                    raise RuntimeError(f"digest send {n}: sent {r['sent']}, the sink took {got}")
                rate.values.append(r["rate"])
                steady.values.append(r["steady_rate"])
                mem.values.append(r["maxrss_mb"])
                mem.extra["setup_mb"] = r["setup_mb"]
                rate.extra.setdefault("before_first_s", []).append(r["before_first"])
                say(f"digest send {n}: {r['rate']:.0f} msg/s ({r['steady_rate']:.0f} steady), {r['maxrss_mb']:.0f} MB")
            by_n[n] = rate
            figures += [rate, steady, mem]
        base_n = 10_000 if 10_000 in by_n else plan.sizes[0]
        digest_rate = by_n[base_n]

        reference = Figure(
            "digest's reference path per message",
            "msg/s",
            note="Renderer.render_full (digest's whole render) + EmailMessage per message, 1 conn",
        )
        common = Figure(
            "common tool send",
            "msg/s",
            note="Jinja2 env once; per message render + premailer + EmailMessage + send_message, 1 conn",
        )
        send.prepared(folder, template, base_n, sink.port, 1)
        for _ in range(plan.naive_repeats):
            r = send.run_child("reference", folder, count=plan.naive_messages)
            reference.values.append(r["rate"])
            r = send.run_child("common", folder, count=plan.naive_messages * 4)
            common.values.append(r["rate"])
            say(f"reference path: {reference.values[-1]:.1f} msg/s, common tool: {common.values[-1]:.1f} msg/s")
        raw = Figure(f"raw limit {base_n:,}", "msg/s", note="pre-built bytes, 4 smtplib connections, pipelined")
        send.prepared(folder, template, base_n, sink.port, 4)
        for _ in range(plan.raw_repeats):
            before = sink.count()
            r = send.run_child("raw", folder, count=base_n)
            if sink.count() - before != base_n:
                raise RuntimeError("raw: the sink did not take every message")
            raw.values.append(r["rate"])
            say(f"raw: {r['rate']:.0f} msg/s")
        figures += [reference, common, raw]
        vs_reference = Figure(f"digest send {base_n:,} vs reference path", "msg/s", list(digest_rate.values))
        vs_reference.compare(reference)
        vs_common = Figure(f"digest send {base_n:,} vs common tool", "msg/s", list(digest_rate.values))
        vs_common.compare(common)
        steady_rate = next(f for f in figures if f.name == f"digest send {base_n:,} steady")
        vs_raw = Figure(f"digest send {base_n:,} steady vs raw", "msg/s", list(steady_rate.values))
        vs_raw.compare(raw, at_least=0.5, label=">= 0.5x raw limit (stretch 0.75x)")
        figures += [vs_reference, vs_common, vs_raw]

        what_if = Figure(
            f"what-if: claim batch {plan.what_if_batch}, {base_n:,}",
            "msg/s",
            note="SmtpSender(batch=...) instead of make_sender's batch=1; not the shipped code",
        )
        send.prepared(folder, template, base_n, sink.port, 4)
        r = send.run_child("digest", folder, claim_batch=plan.what_if_batch)
        what_if.values.append(r["rate"])
        what_if.extra["steady_rate"] = r["steady_rate"]
        what_if.compare(raw)
        figures.append(what_if)
        say(f"what-if batch {plan.what_if_batch}: {r['rate']:.0f} msg/s ({r['steady_rate']:.0f} steady)")

        if len(plan.sizes) > 1:
            lo, hi = plan.sizes[0], plan.sizes[-1]

            def fig(name: str) -> Figure:
                return next(f for f in figures if f.name == name)

            flat = Figure(f"scaling steady {hi:,} vs {lo:,}", "msg/s", list(fig(f"digest send {hi:,} steady").values))
            flat.compare(fig(f"digest send {lo:,} steady"), at_least=0.9, label=">= 0.9 (flat)")
            whole = Figure(f"scaling end to end {hi:,} vs {lo:,}", "msg/s", list(by_n[hi].values))
            whole.compare(by_n[lo])
            per_sub = (fig(f"digest send {hi:,} peak RSS").median - fig(f"digest send {lo:,} peak RSS").median) * 1024
            growth = Figure(
                "peak RSS growth per subscriber", "KB", [per_sub / (hi - lo)], note="(RSS@max - RSS@min) / dN"
            )
            figures += [flat, whole, growth]
        for n in plan.sizes:
            prep = Figure(f"before the first message, {n:,}", "s", list(by_n[n].extra["before_first_s"]))
            prep.note = "prepare: audience, freeze, render variants, plan the ledger"
            figures.append(prep)

    with send.Sink(delay=0.01) as slow:
        one = Figure("latency 10ms: 1 connection", "msg/s", note="steady rate; sink waits 10 ms per reply")
        many = Figure("latency 10ms: 16 connections", "msg/s", note="steady rate")
        for _ in range(plan.latency_repeats):
            send.prepared(folder, template, plan.latency_one, slow.port, 1)
            r = send.run_child("digest", folder)
            one.values.append(r["steady_rate"])
            send.prepared(folder, template, plan.latency_many, slow.port, 16)
            r16 = send.run_child("digest", folder)
            many.values.append(r16["steady_rate"])
            say(f"latency: 1 conn {r['steady_rate']:.1f} msg/s, 16 conns {r16['steady_rate']:.1f} msg/s")
        many.compare(one, at_least=14, label=">= 14x 1 connection")
        most = Figure("latency 10ms: 64 connections", "msg/s", note="steady rate")
        send.prepared(folder, template, max(plan.latency_many, 64 * 40), slow.port, 64)
        r64 = send.run_child("digest", folder)
        most.values.append(r64["steady_rate"])
        most.compare(one, at_least=40, label=">= 40x 1 connection")
        say(f"latency: 64 conns {r64['steady_rate']:.1f} msg/s")
        figures += [one, many, most]
        send.prepared(folder, template, plan.latency_many, slow.port, 16)
        r = send.run_child("digest", folder, claim_batch=plan.what_if_batch)
        what_if = Figure(f"what-if: claim batch {plan.what_if_batch}, latency 16 conns", "msg/s", [r["steady_rate"]])
        what_if.compare(one)
        figures.append(what_if)
        say(f"latency what-if batch {plan.what_if_batch}: 16 conns {r['steady_rate']:.1f} msg/s")
    bench_send_path(folder, template, plan, figures)


def bench_send_path(folder: Path, template: Path, plan: Plan, figures: list[Figure]) -> None:
    """The send path's guarantee at full speed (SIGKILL mid-send) and where its time per message goes."""
    n = 10_000 if 10_000 in plan.sizes else plan.sizes[0]
    r = crash.kill_and_resend(folder, template, n, 4)
    doubt = Figure(f"kill -9 mid-send {n:,}, 4 connections: rows in doubt", "rows", [r["in_doubt"]])
    doubt.target, doubt.met = "<= 4 (one per connection)", r["in_doubt"] <= 4
    doubt.note = f"killed after {r['killed_after']:,} messages; the re-run sent {r['resent']:,}"
    repeats = Figure("kill -9 then re-run: repeated or missing messages", "msg", [r["repeats"] + r["missing"]])
    repeats.target, repeats.met = "0", r["repeats"] + r["missing"] == 0
    figures += [doubt, repeats]
    say(f"kill -9: {r['in_doubt']} in doubt, {r['repeats']} repeats, {r['missing']} missing")

    steady = next((f for f in figures if f.name == f"digest send {n:,} steady"), None)
    with send.Sink() as sink:
        send.prepared(folder, template, min(n, 5000), sink.port, 4)
        stages = send.run_profile(folder, min(n, 5000))
    for stage, us in stages.items():
        figures.append(Figure(f"send path per message: {stage}", "us", [us], note="one thread, one at a time"))
    if steady is not None and steady.median > 0:
        wall = Figure(
            "send path per message: 4 connections, steady", "us", [1e6 / steady.median], note="1 / steady rate"
        )
        figures.append(wall)
    say("send path (us per message): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))


def bench_fetch(root: Path, plan: Plan, figures: list[Figure]) -> None:
    first = Figure(f"digest fetch {plan.feeds} feeds, first", "s", note="whole process; 200 ms per response")
    again = Figure(f"digest fetch {plan.feeds} feeds, all 304", "s", note="whole process; no body served, none parsed")
    floor = Figure(
        f"latency floor, {plan.feeds} feeds", "s", [plan.feeds * 0.2 / 8], note="feeds x 200 ms / 8 connections"
    )
    r2e = f"rss2email {fetch.R2E_VERSION} run"
    r2e_parse = Figure(
        f"{r2e} --no-send {plan.feeds} feeds, first", "s", note="fetch, parse, mark seen (digest fetch's work)"
    )
    r2e_parse_again = Figure(f"{r2e} --no-send {plan.feeds} feeds, all 304", "s", note="whole process")
    r2e_first = Figure(f"{r2e} {plan.feeds} feeds, first", "s", note="whole process, mails every entry to the sink")
    with fetch.FeedServer(plan.feeds, 50, 0.2) as server, send.Sink() as sink:
        for _ in range(plan.fetch_repeats):
            folder = fetch.digest_folder(root, server, plan.feeds)
            t, statuses = fetch.time_digest_fetch(folder)
            if statuses.get("ok") != plan.feeds or fetch.stored_entries(folder) != plan.feeds * 50:
                raise RuntimeError(f"digest fetch: {statuses}")
            first.values.append(t)
            t2, seen = fetch.time_refetch(folder, server, plan.feeds)  # all 304, no body served, nothing parsed
            again.values.append(t2)
            again.extra.update(seen)
            say(f"digest fetch: first {t:.2f} s, all-304 {t2:.2f} s {seen}")
        config, data = fetch.r2e_folder(root, server, plan.feeds, sink.port)
        r2e_parse.values.append(fetch.time_r2e_run(config, data, send=False))
        say(f"r2e --no-send first: {r2e_parse.values[-1]:.1f} s")
        if plan.r2e_second:
            r2e_parse_again.values.append(fetch.time_r2e_run(config, data, send=False))
            say(f"r2e --no-send all-304: {r2e_parse_again.values[-1]:.1f} s")
        config, data = fetch.r2e_folder(root, server, plan.feeds, sink.port)
        before = sink.count()
        r2e_first.values.append(fetch.time_r2e_run(config, data))
        r2e_first.extra["mails"] = sink.count() - before
        say(f"r2e first (mailing): {r2e_first.values[-1]:.1f} s, {r2e_first.extra['mails']} mails")
    speed = Figure("rss2email --no-send / digest fetch, first", "x", [r2e_parse.median / first.median])
    speed.target = ">= 5x"
    speed.met = speed.values[0] >= 5
    mailing = Figure("rss2email run (mailing) / digest fetch, first", "x", [r2e_first.median / first.median])
    over_floor = Figure("all 304 minus the latency floor", "s", [again.median - floor.values[0]])
    over_floor.target = "<= 1 s"
    over_floor.met = over_floor.values[0] <= 1
    figures += [first, again, floor, r2e_parse] + ([r2e_parse_again] if r2e_parse_again.values else [])
    figures += [r2e_first, speed, mailing, over_floor]


def bench_render(root: Path, plan: Plan, figures: list[Figure]) -> None:
    folder = render.sample_folder(root)
    build = Figure("digest build sample (process)", "s", note=f"digest build --week {render.SAMPLE_WEEK}")
    per = Figure("digest build per variant", "s")
    for _ in range(plan.build_repeats):
        t, variants = render.time_build(folder)
        build.values.append(t)
        per.values.append(t / max(variants, 1))
        build.extra["variants"] = variants
    say(f"build: {build.median:.2f} s, {build.extra['variants']} variants")
    many = Figure(f"render {plan.variants} variants of 10 themes", "s", note="Renderer.variants, after one warm-up")
    each = Figure("render one variant (of 10 themes)", "ms")
    ref = Figure(
        f"render {plan.variants} variants, reference path",
        "s",
        note=f"one plain Premailer per variant (the path before), first {plan.reference_variants} scaled",
    )
    for _ in range(plan.variant_repeats):
        t, got = render.time_variants(plan.variants)
        t_ref, got_ref = render.time_variants(min(plan.reference_variants, plan.variants), reference=True)
        if got != plan.variants:
            raise RuntimeError(f"render variants: {got} of {plan.variants} came back")
        many.values.append(t)
        each.values.append(t / got * 1000)
        ref.values.append(t_ref / got_ref * got)
        many.extra.setdefault("speedups", []).append(ref.values[-1] / t)
        say(f"variants: {got} in {t:.1f} s; reference path {t_ref / got_ref * 1000:.1f} ms a variant")
    # A time: the speed-up is the reference's median over this one's (Figure.compare divides the other way).
    many.ratio = ref.median / many.median
    many.ratio_of = ref.name
    many.target = ">= 3x faster than the reference path (47 s before)"
    many.met = many.ratio >= 3
    figures += [build, per, many, each, ref]


def bench_store(root: Path, plan: Plan, figures: list[Figure]) -> None:
    keep = dt.timedelta(days=28)
    subs, weeks = 10_000, 52
    sizes = {}
    for label, kept in (("without pruning", None), ("pruning, keep 28d", keep)):
        r = store_size.simulate(root / "store-size.db", weeks=weeks, subscribers=subs, keep=kept)
        fig = Figure(f"store after {weeks} weekly issues to {subs:,}, {label}", "MB", [r["mb"]])
        fig.note = f"SQLite after VACUUM; {r['ledger_rows']:,.0f} ledger rows, {r['entries']:,.0f} entries left"
        fig.extra = r
        sizes[label] = fig
        figures.append(fig)
        say(f"store size {label}: {r['mb']:.1f} MB, {r['ledger_rows']:,.0f} ledger rows, prune {r['prune_s']:.1f} s")
    ratio = Figure(
        "store size, pruned / not pruned", "x", [sizes["pruning, keep 28d"].median / sizes["without pruning"].median]
    )
    figures.append(ratio)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, help="quick run: send to this many subscribers only")
    parser.add_argument(
        "--only", choices=("send", "fetch", "render", "store"), action="append", help="run just these parts"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()
    plan = plan_for(args.n)
    parts = args.only or ["send", "fetch", "render", "store"]
    meta = machine()
    meta.update(
        mode="quick" if args.n else "full",
        plan=plan.__dict__ | {"repeats": {str(k): v for k, v in plan.repeats.items()}},
    )
    say(f"{meta['cpus']} x {meta['model']}, Python {meta['python']}, load {meta['loadavg_at_start']}")
    figures: list[Figure] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        root = Path(tmp)
        if "send" in parts:
            bench_send(root, plan, figures)
        if "fetch" in parts:
            bench_fetch(root, plan, figures)
        if "render" in parts:
            bench_render(root, plan, figures)
        if "store" in parts:
            bench_store(root, plan, figures)
    meta["wall_s"] = time.perf_counter() - started
    meta["loadavg_at_end"] = list(os.getloadavg())
    print(table(figures, previous_figures(Path(__file__).with_name("results.json"))))
    write_results(args.out, figures, meta)
    say(f"done in {meta['wall_s']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
