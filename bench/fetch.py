"""The fetch path: ``digest fetch`` and rss2email 3.14 against the same slow feeds.

``python -m bench.fetch serve --feeds N --items M --delay 0.2`` is the feed
server: a threaded HTTP server on 127.0.0.1 (its own process) serving
``/feed/<i>.xml``, each response held back ``delay`` seconds, with an ETag
and ``304 Not Modified`` for a matching ``If-None-Match``. It prints
``PORT <n>``; ``count`` on stdin answers ``COUNT <200s> <304s>``.

The parent side times whole processes (``time.perf_counter`` around
``subprocess.run``): ``.venv/bin/digest --config ... fetch`` twice (first
fetch, then every source answering 304), and ``r2e run --no-send`` (fetch, parse,
mark seen: the same work) and ``r2e run`` delivering to the sink, in a separate
venv (``bench/.venv-rss2email``, made on first use).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.workload import THEMES, config_text, rss_feed

PYTHON = sys.executable
DIGEST = str(Path(sys.executable).with_name("digest"))
R2E_VENV = Path(__file__).parent / ".venv-rss2email"
R2E_VERSION = "3.14"


# -- the feed server (child process) ------------------------------------------------


def serve(feeds: int, items: int, delay: float) -> None:
    start = dt.datetime(2018, 1, 8, tzinfo=dt.UTC)
    bodies = {
        f"/feed/{i}.xml": rss_feed(f"feed{i}", items, start=start, themes=THEMES, paragraphs=2) for i in range(feeds)
    }
    etags = {path: '"' + hashlib.sha256(body).hexdigest()[:16] + '"' for path, body in bodies.items()}
    counts = {"ok": 0, "not_modified": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            time.sleep(delay)
            body = bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            etag = etags[self.path]
            if self.headers.get("If-None-Match") == etag:
                with lock:
                    counts["not_modified"] += 1
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with lock:
                counts["ok"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # The listen backlog is fixed when the socket binds (in __init__); set on the instance
        # afterwards it stayed at socketserver's 5, and the 6th to 8th simultaneous connection
        # waited out a SYN retransmission (1 s), which no real feed server makes a client do.
        request_queue_size = 256
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(f"COUNT {counts['ok']} {counts['not_modified']}", flush=True)
    server.shutdown()


class FeedServer:
    """The feed server as a child process, for a ``with`` block."""

    def __init__(self, feeds: int, items: int, delay: float) -> None:
        self.args = ["--feeds", str(feeds), "--items", str(items), "--delay", str(delay)]
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> FeedServer:
        cmd = [PYTHON, "-m", "bench.fetch", "serve", *self.args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline().split()[1])
        return self

    def counts(self) -> tuple[int, int]:
        """(full responses, 304 responses) so far."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        _, ok, nm = self.proc.stdout.readline().split()
        return int(ok), int(nm)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=10)

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/feed/{i}.xml"


# -- digest fetch --------------------------------------------------------------------


def digest_folder(root: Path, server: FeedServer, feeds: int) -> Path:
    """A fresh working folder whose sources are the server's feeds."""
    folder = root / "fetch-digest"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    sources = "\n".join(
        f'[[sources]]\nname = "Feed {i}"\nkind = "feed"\nurl = "{server.url(i)}"\n' for i in range(feeds)
    )
    (folder / "digest.toml").write_text(config_text(port=25, connections=1, sources=sources), encoding="utf-8")
    return folder


def time_digest_fetch(folder: Path) -> tuple[float, dict[str, int]]:
    """Seconds for one ``digest fetch`` process, and the statuses its report shows."""
    cmd = [DIGEST, "--config", str(folder / "digest.toml"), "fetch"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_env())
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"digest fetch failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed, report_statuses(done.stdout)


def report_statuses(report: str) -> dict[str, int]:
    """How many sources of a ``digest fetch`` report table are in each status."""
    statuses: dict[str, int] = {}
    for cells in _report_rows(report):
        statuses[cells[5]] = statuses.get(cells[5], 0) + 1
    return statuses


def report_entries(report: str) -> int:
    """How many entries (new, updated and unchanged) the sources of a ``digest fetch`` report listed."""
    return sum(int(cells[i]) for cells in _report_rows(report) for i in (2, 3, 4))


def _report_rows(report: str) -> list[list[str]]:
    rows = []
    for line in report.splitlines():
        cells = [c.strip() for c in line.split("\u2502")]  # the table's vertical rule
        if len(cells) >= 7 and cells[1] != "source":
            rows.append(cells)
    return rows


def time_refetch(folder: Path, server: FeedServer, feeds: int) -> tuple[float, dict[str, Any]]:
    """Seconds for the second ``digest fetch`` of ``folder``, which must parse nothing.

    Every source must answer 304 (the report says ``not_modified`` for all
    ``feeds``), the server must have sent no body at all (so there was
    nothing to parse), and the report must list no entry, new, updated or
    unchanged (a parsed feed lists its entries as unchanged). Raises otherwise.
    """
    ok_before, nm_before = server.counts()
    cmd = [DIGEST, "--config", str(folder / "digest.toml"), "fetch"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_env())
    elapsed = time.perf_counter() - start
    ok_after, nm_after = server.counts()
    statuses = report_statuses(done.stdout)
    seen = {
        "statuses": statuses,
        "bodies_served": ok_after - ok_before,
        "not_modified_served": nm_after - nm_before,
        "entries_listed": report_entries(done.stdout),
    }
    wanted = {"statuses": {"not_modified": feeds}, "bodies_served": 0, "not_modified_served": feeds}
    wanted["entries_listed"] = 0
    if done.returncode != 0 or seen != wanted:
        output = done.stdout[-2000:] + done.stderr[-2000:]
        raise RuntimeError(f"digest fetch, second time: {seen}, wanted {wanted}\n{output}")
    return elapsed, seen


def stored_entries(folder: Path) -> int:
    from digest.config import load_config
    from digest.store import Store

    with Store.open(load_config(folder / "digest.toml").digest.database) as store:
        return store.entry_count()


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["COLUMNS"] = "200"  # the report table must not wrap
    return env


# -- rss2email -------------------------------------------------------------------------


def r2e_binary() -> Path:
    """``r2e`` in its own venv, installed from PyPI on first use."""
    r2e = R2E_VENV / "bin" / "r2e"
    if not r2e.exists():
        subprocess.run([PYTHON, "-m", "venv", str(R2E_VENV)], check=True, env=_bare_env())
        pip = [str(R2E_VENV / "bin" / "pip"), "install", "-q", f"rss2email=={R2E_VERSION}"]
        subprocess.run(pip, check=True, env=_bare_env(), cwd=R2E_VENV)
    return r2e


def _bare_env() -> dict[str, str]:
    import os

    # Not this project's import path: the rss2email venv must see only its own packages.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def r2e_folder(root: Path, server: FeedServer, feeds: int, sink_port: int) -> tuple[Path, Path]:
    """A fresh rss2email config and data file with every feed added; returns (config, data)."""
    folder = root / "fetch-r2e"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config, data = folder / "r2e.cfg", folder / "r2e.json"
    base = [str(r2e_binary()), "--config", str(config), "--data", str(data)]
    subprocess.run([*base, "new", "bench@example.org"], check=True, capture_output=True, env=_bare_env())
    text = config.read_text(encoding="utf-8")
    settings = {
        "email-protocol": "smtp",
        "smtp-server": f"127.0.0.1:{sink_port}",
        "smtp-auth": "False",
        "smtp-ssl": "False",
        "from": "r2e@example.org",
    }
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(line if key not in settings else f"{key} = {settings.pop(key)}")
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for i in range(feeds):
        subprocess.run([*base, "add", f"feed{i}", server.url(i)], check=True, capture_output=True, env=_bare_env())
    return config, data


def time_r2e_run(config: Path, data: Path, *, send: bool = True) -> float:
    """Seconds for one ``r2e run`` process: fetch every feed, then mail every new entry to the sink.

    With ``send=False`` it is ``r2e run --no-send``: fetch, parse and mark every entry seen, the
    same work as ``digest fetch``.
    """
    cmd = [str(r2e_binary()), "--config", str(config), "--data", str(data), "run", *([] if send else ["--no-send"])]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_bare_env())
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"r2e run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description="the feed server of the fetch benchmark")
    parser.add_argument("command", choices=("serve",))
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.2)
    args = parser.parse_args()
    serve(args.feeds, args.items, args.delay)


if __name__ == "__main__":
    main()
