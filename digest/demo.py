"""``digest demo``: the whole job on bundled sample data, with no network.

A working folder is scaffolded with the sample sources, subscribers and
templates; an aiosmtpd server on 127.0.0.1 (port chosen by the OS) stores
what it receives in ``<folder>/outbox/`` (a Maildir); then the pipeline
fetches, builds and sends issue 2018-W02 through a real SMTP conversation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import mailbox
import os
import shlex
import shutil
import sys
from pathlib import Path
from types import TracebackType

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from rich.console import Console

from digest import pipeline
from digest.config import load_config
from digest.errors import ConfigError
from digest.models import IsoWeek
from digest.scaffold import scaffold

DEMO_WEEK = IsoWeek(2018, 2)
DEMO_SECRET = "digest-demo-only-secret"
MARKER = ".digest-demo"


class _MaildirHandler:
    def __init__(self, folder: Path) -> None:
        self.box = mailbox.Maildir(folder, create=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        self.box.add(mailbox.MaildirMessage(data))
        return "250 OK stored"


class _Controller(Controller):
    def _trigger_server(self) -> None:
        # Bound to port 0: learn the real port before the start-up probe connects.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class LoopbackMailServer:
    """An SMTP server on 127.0.0.1 that files every message into a Maildir."""

    def __init__(self, folder: Path) -> None:
        self.controller = _Controller(_MaildirHandler(folder), hostname="127.0.0.1", port=0)

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def __enter__(self) -> LoopbackMailServer:
        self.controller.start()  # type: ignore[no-untyped-call]
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.controller.stop()  # type: ignore[no-untyped-call]


def _fresh_folder(directory: Path) -> None:
    if directory.exists():
        if not (directory / MARKER).exists():
            raise ConfigError(f"{directory}: exists and was not made by `digest demo`; pick another folder")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("made by digest demo; safe to delete\n", encoding="utf-8")


def shell_path(path: Path, cwd: Path) -> str:
    """``path`` as a shell word, relative to ``cwd`` when under it (``demo/digest.toml``), else absolute."""
    try:
        rel = path.relative_to(cwd)
    except ValueError:
        return shlex.quote(str(path))
    text = str(rel)
    # A bare name would be looked up on PATH, not in the folder.
    return shlex.quote(text if os.sep in text else f".{os.sep}{text}")


def program(cwd: Path) -> str:
    """How to run ``digest`` from ``cwd`` as this process was run: ``digest`` when it is on PATH, else its path.

    After ``make demo`` the command lives in ``.venv/bin/``, which is not on
    PATH until the venv is activated, so the printed commands name it.
    """
    script = Path(sys.executable).with_name("digest")
    found = shutil.which("digest")
    if found is not None and (not script.exists() or Path(found).resolve() == script.resolve()):
        return "digest"
    if script.exists():
        return shell_path(script.absolute(), cwd)
    return f"{shlex.quote(sys.executable)} -m digest"


def run_demo(directory: Path, console: Console, *, now: dt.datetime | None = None) -> int:
    """Run the demo into ``directory``; returns the exit code."""
    directory = directory.resolve()
    _fresh_folder(directory)
    scaffold(directory)
    config = load_config(directory / "digest.toml")
    outbox = directory / "outbox"

    def clock() -> dt.datetime:
        return now if now is not None else dt.datetime.now(dt.UTC)

    weeks = (DEMO_WEEK,)
    with LoopbackMailServer(outbox) as server:
        sender = dataclasses.replace(config.sender, transport="smtp", host="127.0.0.1", port=server.port)
        # Sending needs an unsubscribe-token key; the demo's messages only ever reach its own outbox.
        settings = dataclasses.replace(config.digest, secret=config.digest.secret or DEMO_SECRET)
        config = dataclasses.replace(config, sender=sender, digest=settings)
        console.print(f"[bold]digest demo[/] in {directory}")
        console.print(f"SMTP server on 127.0.0.1:{server.port} storing into {outbox}/")
        with pipeline.open_store(config) as store:
            lines = pipeline.fetch_all(config, store, clock())
            for line in lines:
                r, c = line.result, line.counts
                extra = f" ({r.error})" if r.error else ""
                console.print(f"  fetched {r.source}: {r.status.value}{extra}, {c.new} new")
            summary = pipeline.send_issue(config, store, weeks, clock=clock)
            issue = pipeline.make_issue(config, store, weeks)
            built = pipeline.build(config, store, issue, clock())
        paths = pipeline.write_build(config, built, directory / "out")
    report = summary.report
    count = len(list(mailbox.Maildir(outbox, create=False).keys()))
    console.print(
        f"issue {summary.issue_key}: {report.sent} sent, {report.failed_permanent + report.failed_temporary} failed, "
        f"{summary.no_match} subscriber(s) without a matching theme"
    )
    console.print(f"\n{count} message(s) in {outbox}/new/")
    console.print(f"rendered issue: {paths[0]}")
    cwd = Path.cwd()
    command = f"{program(cwd)} --config {shell_path(directory / 'digest.toml', cwd)} preview --week {DEMO_WEEK}"
    console.print(f"live preview:   {command}", markup=False)
    return 1 if summary.failed else 0
