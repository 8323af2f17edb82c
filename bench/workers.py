"""``python -m bench.workers``: msg/s of ``digest worker``s over PostgreSQL, 1×4, 2×4 and 4×4.

A throwaway PostgreSQL 15 server (Debian's binaries, on 127.0.0.1), the
``bench.sink`` SMTP sink with 20 ms per reply (a relay far away: the send
is latency-bound, so it should scale with open connections), and ``W``
worker processes of 4 connections each sending one queued issue. The rate
is the sink's, from its first message to its last. A last run kills one
of two workers half-way (SIGKILL) and reports the rows left in doubt.
Writes ``bench/results-workers.json``; see BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import workload
from bench.send import Sink

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PYTHON = sys.executable
SHAPES = ((1, 4), (2, 4), (4, 4))


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _as_postgres(args: list[str], cwd: Path) -> None:
    if os.geteuid() == 0:  # initdb refuses to run as root
        args = ["runuser", "-u", "postgres", "--", *args]
    subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=True)


@contextmanager
def postgres() -> Iterator[int]:
    """A PostgreSQL 15 server for the run (fsync off); yields its port."""
    base = Path(tempfile.mkdtemp(prefix="digest-bench-pg-"))
    if os.geteuid() == 0:
        pwd.getpwnam("postgres")
        shutil.chown(base, "postgres", "postgres")
    data = base / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    try:
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-N"], base)
        opts = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c synchronous_commit=off -c max_connections=200"
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o", opts, "start"], base
        )
        yield port
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            if os.geteuid() == 0
            else [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def _digest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [PYTHON, "-c", "from digest.cli import main; main()", "--config", str(folder / "digest.toml"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"digest {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def _prepare(root: Path, pg_port: int, run: int, n: int, sink_port: int, batch: int) -> Path:
    """A fresh database and folder with ``n`` subscribers, fetched, migrated and queued."""
    import psycopg

    db = f"bench_{run}"
    with psycopg.connect(f"host=127.0.0.1 port={pg_port} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")  # type: ignore[arg-type]
        conn.execute(f"CREATE DATABASE {db}")  # type: ignore[arg-type]
    folder = workload.send_folder(root)
    path = workload.write_config(folder, port=sink_port, connections=4)
    text = path.read_text(encoding="utf-8").replace(
        'database = "sqlite:///digest.db"', f'database = "postgresql+psycopg://postgres@127.0.0.1:{pg_port}/{db}"'
    )
    path.write_text(text + f"\n[workers]\nenabled = true\nbatch_size = {batch}\nstalled_after = 3\n", encoding="utf-8")
    workload.write_subscribers(folder, n)
    _digest(folder, "fetch")
    _digest(folder, "db", "migrate")
    _digest(folder, "send", "--week", workload.WEEK)
    return folder


def _ledger(folder: Path) -> dict[str, int]:
    from digest import pipeline
    from digest.config import load_config

    config = load_config(folder / "digest.toml", env={})
    with pipeline.open_store(config) as store:
        return {d.value: n for d, n in store.delivery_counts(workload.WEEK).items()}


def _done(folder: Path, n: int) -> bool:
    c = _ledger(folder)
    return c["sent"] + c["unknown"] >= n


def one_run(
    root: Path, pg_port: int, run: int, n: int, batch: int, workers: int, conns: int, kill: bool = False
) -> dict[str, float]:
    with Sink(delay=0.02) as sink:
        folder = _prepare(root, pg_port, run, n, sink.port, batch)
        cmd = [PYTHON, "-c", "from digest.cli import main; main()", "--config", str(folder / "digest.toml")]
        procs = [
            subprocess.Popen(
                [*cmd, "worker", "--concurrency", str(conns)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for _ in range(workers)
        ]
        try:
            first = last = 0.0
            killed = False
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                got = sink.count()
                now = time.monotonic()
                if got and not first:
                    first = now
                if kill and not killed and got >= n // 2:
                    os.kill(procs[0].pid, signal.SIGKILL)
                    killed = True
                if got >= n or (killed and _done(folder, n)):
                    last = now
                    break
                time.sleep(0.05)
            counts = _ledger(folder)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not last:
            raise RuntimeError(f"{workers}x{conns}: the sink took {sink.count()} of {n} in time")
        return {
            "rate": sink.count() / max(last - first, 1e-6),
            "seconds": last - first,
            "sent": counts["sent"],
            "in_doubt": counts["unknown"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1600, help="subscribers per run")
    # Small batches, so the last round of batches does not leave most connections idle.
    parser.add_argument("--batch", type=int, default=25, help="[workers] batch_size")
    parser.add_argument("--out", type=Path, default=Path("bench/results-workers.json"))
    args = parser.parse_args()
    results: dict[str, object] = {"n": args.n, "batch_size": args.batch, "relay_latency_ms": 20}
    with tempfile.TemporaryDirectory(prefix="digest-bench-workers-") as tmp, postgres() as pg_port:
        root = Path(tmp)
        for i, (w, c) in enumerate(SHAPES):
            r = one_run(root, pg_port, i, args.n, args.batch, w, c)
            results[f"{w}x{c}"] = r
            say(f"{w}x{c}: {r['rate']:.0f} msg/s ({r['seconds']:.1f} s)")
        k = one_run(root, pg_port, 9, args.n, args.batch, 2, 4, kill=True)
        results["2x4 one killed"] = k
        say(f"2x4, one worker killed half-way: sent {k['sent']:.0f}, in doubt {k['in_doubt']:.0f} (of {args.n})")
    base = results["1x4"]["rate"]  # type: ignore[index]
    for shape, target in (("2x4", 1.6), ("4x4", 2.5)):
        ratio = results[shape]["rate"] / base  # type: ignore[index]
        results[f"{shape} / 1x4"] = {"ratio": ratio, "target": target, "met": ratio >= target}
        say(f"{shape} / 1x4 = {ratio:.2f} (target {target})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
