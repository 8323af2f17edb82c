"""A scaffolded working folder with a generated subscriber list, for the end-to-end send tests.

``make_folder`` writes a folder whose ``digest.toml`` sends over SMTP to a
loopback test server; ``load`` reads it with a fixed secret. The list mixes
theme choices (including one theme that has no entries in 2018-W02, so
those readers get nothing) and awkward display names.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import email
import email.policy
import io
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from digest.config import Config, load_config
from digest.pipeline import fetch_all, open_store
from digest.scaffold import scaffold
from tests.fixtures.smtp_server import Received, SmtpServer

REPO = Path(__file__).resolve().parents[3]
SECRET = "test-secret-for-unsubscribe-tokens"
ENV = {"DIGEST_SECRET": SECRET}
WEEK = "2018-W02"
#: 2018-01-16 10:00 UTC is Tuesday of 2018-W03 in Asia/Shanghai: the last complete week is 2018-W02.
RUN_NOW = dt.datetime(2018, 1, 16, 10, 0, tzinfo=dt.UTC)
EMPTY_THEME = "Space policy"

# Theme choices cycled over the rows; "" means every theme.
CHOICES = (
    "",
    "Cybersecurity",
    "AI & tech competition",
    "Internet governance;Digital economy",
    EMPTY_THEME,
    "Cybersecurity;" + EMPTY_THEME,
)
NAMES = (
    'O\'Brien "Bob"',
    "Zoë Ångström",
    "李雷",
    "Smith, John",
    "=?utf-8?q?not_encoded?=",
    "Anne-Marie <admin>",
    "",
    "Plain Reader",
)


@dataclass(frozen=True, slots=True)
class Row:
    email: str
    name: str
    themes: str

    @property
    def chosen(self) -> frozenset[str]:
        return frozenset(t for t in self.themes.split(";") if t)


def rows(n: int) -> list[Row]:
    """``n`` subscribers ``r000@example.org``... (addresses sort in row order)."""
    return [Row(f"r{i:03d}@example.org", NAMES[i % len(NAMES)], CHOICES[i % len(CHOICES)]) for i in range(n)]


def matches(row: Row) -> bool:
    """Whether the row gets the 2018-W02 issue (every configured theme but EMPTY_THEME has entries)."""
    return not row.chosen or bool(row.chosen - {EMPTY_THEME})


def write_list(path: Path, people: Iterable[Row]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["email", "name", "themes", "timezone"])
    for r in people:
        w.writerow([r.email, r.name, r.themes, ""])
    path.write_text(buf.getvalue(), encoding="utf-8")


def make_folder(
    root: Path,
    people: list[Row],
    *,
    port: int,
    rate: float = 0,
    connections: int = 4,
    base_url: str = "http://127.0.0.1:8025",
    extra: str = "",
) -> Path:
    """Scaffold ``root`` and point it at the SMTP server on ``port``; returns the config path."""
    scaffold(root)
    write_list(root / "subscribers" / "subscribers.csv", people)
    path = root / "digest.toml"
    text = path.read_text(encoding="utf-8")
    for old, new in (
        ('transport = "maildir"', 'transport = "smtp"'),
        ("port = 2525", f"port = {port}"),
        ("rate = 0 ", f"rate = {rate} "),
        ("connections = 4", f"connections = {connections}"),
        ('base_url = "http://127.0.0.1:8025"', f'base_url = "{base_url}"'),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    text += f'\n[[themes]]\nname = "{EMPTY_THEME}"\nkeywords = ["asteroid", "orbital"]\n' + extra
    path.write_text(text, encoding="utf-8")
    return path


def fetch(path: Path) -> None:
    """``digest fetch`` in this process (the sources are local files)."""
    config = load(path)
    with open_store(config) as store:
        fetch_all(config, store, RUN_NOW)


def load(path: Path) -> Config:
    return load_config(path, env=dict(ENV))


def fixed_clock(at: dt.datetime = RUN_NOW) -> Callable[[], dt.datetime]:
    """A clock that advances one millisecond a call, from ``at``."""
    state = [at]

    def clock() -> dt.datetime:
        state[0] += dt.timedelta(milliseconds=1)
        return state[0]

    return clock


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def per_recipient(messages: Iterable[Received]) -> Counter[str]:
    """How many messages each envelope recipient got."""
    counts: Counter[str] = Counter()
    for m in messages:
        counts.update(m.rcpt_tos)
    return counts


def header_lines(data: bytes) -> list[str]:
    """The raw header lines of a message, unfolded."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    return re.sub(r"\r\n[ \t]", " ", head).split("\r\n")


def digest_cmd(config: Path, *args: str) -> list[str]:
    # No ``__main__`` in digest.cli; this is what the ``digest`` script runs.
    return [sys.executable, "-c", "from digest.cli import main; main()", "--config", str(config), *args]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(ENV)
    env["COLUMNS"] = "200"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def run_cli(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        digest_cmd(config, *args), capture_output=True, text=True, env=cli_env(), timeout=timeout, check=False
    )


class Gate:
    """Holds the server's reply to every DATA after the first ``after`` until ``open()``.

    Wraps the fixture server's ``handle_DATA`` on the instance, so a sending
    process stays mid-send (holding its lock and its claim) for as long as a
    test needs, with no timing involved.
    """

    def __init__(self, server: SmtpServer, after: int) -> None:
        self.released = threading.Event()
        self.waiting = threading.Event()
        self._inner = server.handle_DATA
        self._seen = 0
        self._after = after
        server.handle_DATA = self._handle  # type: ignore[method-assign,assignment]

    async def _handle(self, *args: Any) -> Any:
        self._seen += 1  # the handler runs on the server's one event loop thread
        if self._seen > self._after:
            self.waiting.set()
            while not self.released.is_set():
                await asyncio.sleep(0.01)
        return await self._inner(*args)

    def open(self) -> None:
        self.released.set()
