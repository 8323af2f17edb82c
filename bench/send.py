"""The send path: ``pipeline.send_issue`` against the sink, and its two baselines.

Each measured send runs in a fresh child process (``python -m bench.send
KIND FOLDER ...``) so that its peak memory (``ru_maxrss``) belongs to that
run alone; the child prints one JSON line. The parent (``run_send`` and
friends) prepares the working folder, gives each run a fresh copy of the
database (entries only, no ledger) and checks the sink's count.

Kinds:

* ``digest``: ``pipeline.send_issue``, the same call as ``digest send``;
* ``reference``: digest's reference path per message: per subscriber,
  ``Renderer.render_full`` (digest's whole render: the view, Jinja2, premailer,
  the Gmail-clip check), ``compose_message`` (an ``EmailMessage``) and
  ``smtplib.send_message`` over one reused connection;
* ``common``: what most tools do: one Jinja2 environment (digest's templates,
  compiled once, the view of each variant built once), then per subscriber the
  template rendered with their values, premailer on the rendered HTML, an
  ``EmailMessage`` (text + HTML alternative) and ``smtplib.send_message`` over
  one reused connection;
* ``raw``: one pre-built message's bytes pushed to N recipients over the
  same number of reused smtplib connections as digest uses (threads,
  pipelined MAIL/RCPT/DATA): the transport limit of this client and sink.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import re
import resource
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.workload import WEEK, write_config, write_subscribers

PYTHON = sys.executable


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- children ------------------------------------------------------------------


def child_digest(folder: Path, profile: Path | None, claim_batch: int = 0) -> dict[str, Any]:
    from digest import pipeline
    from digest.config import load_config
    from digest.models import IsoWeek

    if claim_batch:
        # What-if only: the shipped sender claims one ledger row per message.
        from email.utils import parseaddr

        from digest.config import SenderSettings
        from digest.send import SmtpSender

        def batched(settings: SenderSettings) -> SmtpSender:
            return SmtpSender(settings, parseaddr(settings.from_)[1], batch=claim_batch, claim_ahead=True)

        # Wherever the pipeline looks the sender factory up (it may be a package).
        factory = "make_sender"
        for name, module in list(sys.modules.items()):
            if name.startswith("digest.pipeline") and hasattr(module, factory):
                setattr(module, factory, batched)
    config = load_config(folder / "digest.toml")
    store = pipeline.open_store(config)
    setup_mb = _maxrss_mb()
    marks = {"first": 0.0, "last": 0.0, "count": 0}

    def progress(*event: object) -> None:  # (event) or (event, total), as the pipeline gives
        t = time.perf_counter()
        if not marks["count"]:
            marks["first"] = t
        marks["last"] = t
        marks["count"] += 1

    prof = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if prof is not None:
        prof.enable()
    summary = pipeline.send_issue(config, store, [IsoWeek.parse(WEEK)], clock=_now, progress=progress)
    if prof is not None:
        prof.disable()
        prof.dump_stats(str(profile))
    elapsed = time.perf_counter() - start
    store.close()
    r = summary.report
    steady = (marks["count"] - 1) / (marks["last"] - marks["first"]) if marks["count"] > 1 else 0.0
    return {
        "sent": r.sent,
        "failed": r.failed,
        "elapsed": elapsed,
        "rate": r.sent / elapsed,
        "steady_rate": steady,
        "before_first": marks["first"] - start,
        "setup_mb": setup_mb,
        "maxrss_mb": _maxrss_mb(),
    }


def child_reference(folder: Path, count: int) -> dict[str, Any]:
    from digest import pipeline, placeholders
    from digest.compose import compose_message
    from digest.config import load_config
    from digest.models import IsoWeek, Rendered

    config = load_config(folder / "digest.toml")
    store = pipeline.open_store(config)
    issue = pipeline.make_issue(config, store, [IsoWeek.parse(WEEK)])
    renderer = pipeline.renderer_for(config)
    people = [(s, v) for s, v in pipeline.audience(config, store, issue).assignments if v][:count]
    settings = pipeline.compose_settings(config, _now())
    start = time.perf_counter()
    smtp = smtplib.SMTP(config.sender.host, config.sender.port, local_hostname="example.org")
    for sub, variant in people:
        rec = pipeline.recipient(config, sub)
        values = placeholders.values_for(sub.name, sub.email, rec.unsubscribe_url, title=config.digest.title)
        subject, html, text = renderer.render_full(issue, pipeline.selection(sub, issue), values)
        rendered = Rendered(issue.key, variant, issue.themes, subject, html, text)
        smtp.send_message(compose_message(rendered, rec, settings))
    smtp.quit()
    elapsed = time.perf_counter() - start
    return {"sent": len(people), "elapsed": elapsed, "rate": len(people) / elapsed, "maxrss_mb": _maxrss_mb()}


def child_common(folder: Path, count: int) -> dict[str, Any]:
    import logging
    from email.message import EmailMessage

    from premailer import Premailer

    from digest import pipeline, placeholders
    from digest.config import load_config
    from digest.models import IsoWeek

    config = load_config(folder / "digest.toml")
    store = pipeline.open_store(config)
    issue = pipeline.make_issue(config, store, [IsoWeek.parse(WEEK)])
    renderer = pipeline.renderer_for(config)
    people = [(s, v) for s, v in pipeline.audience(config, store, issue).assignments if v][:count]
    # Built once, as any tool would: the environment, the templates, each variant's view.
    html_t, text_t, subject_t = renderer._html, renderer._text, renderer._subject
    views: dict[str, Any] = {}
    start = time.perf_counter()
    smtp = smtplib.SMTP(config.sender.host, config.sender.port, local_hostname="example.org")
    for sub, variant in people:
        if variant not in views:
            chosen, key = renderer._select(issue, pipeline.selection(sub, issue))
            views[variant] = (renderer._view(issue, chosen, None), key)
        view, key = views[variant]
        rec = pipeline.recipient(config, sub)
        values = placeholders.values_for(sub.name, sub.email, rec.unsubscribe_url, title=config.digest.title)
        context = renderer._context(view, key, values.by_key())
        subject = " ".join(subject_t.render(context).split())
        html = html_t.render(context, subject=subject)
        html = Premailer(
            html, allow_network=False, disable_validation=True, cssutils_logging_level=logging.CRITICAL
        ).transform()
        msg = EmailMessage()
        msg["From"] = config.sender.from_
        msg["To"] = sub.email
        msg["Subject"] = subject
        msg["List-Unsubscribe"] = f"<{rec.unsubscribe_url}>"
        msg.set_content(text_t.render(context))
        msg.add_alternative(html, subtype="html")
        smtp.send_message(msg)
    smtp.quit()
    elapsed = time.perf_counter() - start
    return {"sent": len(people), "elapsed": elapsed, "rate": len(people) / elapsed, "maxrss_mb": _maxrss_mb()}


def child_raw(folder: Path, count: int) -> dict[str, Any]:
    from digest import pipeline
    from digest.compose import MessageTemplate
    from digest.config import load_config
    from digest.models import IsoWeek, Subscriber

    config = load_config(folder / "digest.toml")
    store = pipeline.open_store(config)
    issue = pipeline.make_issue(config, store, [IsoWeek.parse(WEEK)])
    built = pipeline.build(config, store, issue, _now())
    settings = pipeline.compose_settings(config, built.date)
    sub = Subscriber("reader0000000@example.org", "Reader 0")
    data = MessageTemplate.build(built.variants["all"], settings).personalise(pipeline.recipient(config, sub)).data
    payload = re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"
    conns = config.sender.connections
    sent = [0] * conns

    def worker(k: int) -> None:
        smtp = smtplib.SMTP(config.sender.host, config.sender.port, local_hostname="example.org")
        smtp.ehlo()
        for i in range(k, count, conns):
            smtp.send(b"MAIL FROM:<digest@example.org>\r\nRCPT TO:<reader%07d@example.org>\r\nDATA\r\n" % i)
            for _ in range(3):
                smtp.getreply()
            smtp.send(payload)
            code, _ = smtp.getreply()
            sent[k] += code == 250
        smtp.quit()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {"sent": sum(sent), "elapsed": elapsed, "rate": sum(sent) / elapsed, "maxrss_mb": _maxrss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description="one measured send (a child of python -m bench)")
    parser.add_argument("kind", choices=("digest", "reference", "common", "raw"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--claim-batch", type=int, default=0, help="what-if: ledger rows claimed at once")
    args = parser.parse_args()
    if args.kind == "digest":
        out = child_digest(args.folder, args.profile, args.claim_batch)
    elif args.kind == "reference":
        out = child_reference(args.folder, args.count)
    elif args.kind == "common":
        out = child_common(args.folder, args.count)
    else:
        out = child_raw(args.folder, args.count)
    print(json.dumps(out), flush=True)


# -- parent side -----------------------------------------------------------------


class Sink:
    """The sink server (``bench.sink``) as a child process, for a ``with`` block."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> Sink:
        cmd = [PYTHON, "-m", "bench.sink", "--delay", str(self.delay)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "PORT":
            raise RuntimeError("the sink did not start")
        self.port = int(line[1])
        return self

    def count(self) -> int:
        """Messages the sink has taken so far."""
        return self._ask()[0]

    def repeats(self) -> int:
        """Messages so far to a recipient who had already had one."""
        return self._ask()[2]

    def _ask(self) -> list[int]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return [int(x) for x in self.proc.stdout.readline().split()[1:]]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_child(
    kind: str, folder: Path, *, count: int = 0, profile: Path | None = None, claim_batch: int = 0
) -> dict[str, Any]:
    """Run one measured send in a fresh process and return its JSON report."""
    cmd = [PYTHON, "-m", "bench.send", kind, str(folder), "--count", str(count), "--claim-batch", str(claim_batch)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.send {kind} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_profile(folder: Path, count: int) -> dict[str, float]:
    """``bench.send_profile`` in a fresh process: microseconds per message of each send stage."""
    cmd = [PYTHON, "-m", "bench.send_profile", str(folder), "--count", str(count)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.send_profile failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def prepared(folder: Path, template: Path, n: int, port: int, connections: int) -> None:
    """Point the folder at the sink and give it ``n`` subscribers and a fresh database."""
    from bench.workload import fresh_database

    write_config(folder, port=port, connections=connections)
    write_subscribers(folder, n)
    fresh_database(folder, template)


if __name__ == "__main__":
    main()
