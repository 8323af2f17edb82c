"""A small working folder whose one feed the test rewrites between fetches, for the carry tests.

``Site`` writes ``digest.toml`` (time zone UTC, themes ``Alpha`` and
``Beta`` by feed category, two subscribers taking every theme) and a local
RSS file; ``publish`` adds or changes items, ``run`` is ``digest run`` at a
given time (fetch, then send the due issue), all in this process over the
real store and the real sender (SMTP on loopback, or a Maildir).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from xml.sax.saxutils import escape

from digest import pipeline
from digest.codec import issue_from_json
from digest.config import Config, load_config
from digest.models import IsoWeek, Issue
from tests.fixtures.smtp_server import SmtpServer

SECRET = "test-secret-for-carry"
PEOPLE = ("ann@example.org", "bob@example.org")


def eid(guid: str) -> str:
    """The stored id of the feed item ``guid``."""
    return f"Wire:guid:{guid}"


def day(year: int, week: int, weekday: int = 3, hour: int = 12) -> dt.datetime:
    """A moment in an ISO week (weekday 1 = Monday), UTC."""
    return dt.datetime.combine(dt.date.fromisocalendar(year, week, weekday), dt.time(hour), tzinfo=dt.UTC)


def monday(year: int, week: int) -> dt.datetime:
    """09:00 on the Monday of a week: when cron runs ``digest run``."""
    return day(year, week, 1, 9)


def clock_at(at: dt.datetime) -> Callable[[], dt.datetime]:
    """A clock that advances one millisecond a call, from ``at``."""
    state = [at]

    def clock() -> dt.datetime:
        state[0] += dt.timedelta(milliseconds=1)
        return state[0]

    return clock


@dataclass(slots=True)
class Item:
    guid: str
    title: str
    published: dt.datetime
    theme: str = "alpha"
    summary: str = ""


@dataclass(slots=True)
class Site:
    """The folder, its feed items and its config."""

    root: Path
    smtp_port: int | None = None
    issue: str = ""
    extra: str = ""
    items: dict[str, Item] = field(default_factory=dict)

    def __post_init__(self) -> None:
        (self.root / "sources").mkdir(parents=True, exist_ok=True)
        (self.root / "subscribers").mkdir(exist_ok=True)
        rows = "".join(f"{email},,,\n" for email in PEOPLE)
        (self.root / "subscribers" / "list.csv").write_text("email,name,themes,timezone\n" + rows)
        self.write_config()
        self.write_feed()

    def write_config(self) -> None:
        """``digest.toml`` from the fields (call again after changing ``issue`` or ``extra``)."""
        if self.smtp_port is None:
            sender = 'transport = "maildir"\nmaildir = "outbox"'
        else:
            sender = f'transport = "smtp"\nhost = "127.0.0.1"\nport = {self.smtp_port}\nconnections = 1'
        (self.root / "digest.toml").write_text(
            f"""[digest]
title = "Carry Weekly"
timezone = "UTC"
database = "sqlite:///digest.db"
base_url = "http://127.0.0.1:8025"

[issue]
{self.issue}

{self.extra}

[sender]
from = "Carry Weekly <digest@example.org>"
{sender}

[[sources]]
name = "Wire"
kind = "feed"
url = "sources/wire.xml"

[[themes]]
name = "Alpha"
categories = ["alpha"]

[[themes]]
name = "Beta"
categories = ["beta"]
""",
            encoding="utf-8",
        )

    @property
    def config(self) -> Config:
        return load_config(self.root / "digest.toml", env={"DIGEST_SECRET": SECRET})

    def publish(
        self, guid: str, published: dt.datetime, *, theme: str = "alpha", title: str = "", summary: str = ""
    ) -> None:
        """Add (or replace) an item of the feed."""
        self.items[guid] = Item(guid, title or f"Story {guid}", published, theme, summary or f"About {guid}.")
        self.write_feed()

    def write_feed(self) -> None:
        body = "".join(
            f"<item><title>{escape(i.title)}</title><link>https://wire.example.org/{i.guid}</link>"
            f'<guid isPermaLink="false">{i.guid}</guid><pubDate>{email.utils.format_datetime(i.published)}</pubDate>'
            f"<category>{i.theme}</category><description>{escape(i.summary)}</description></item>"
            for i in self.items.values()
        )
        (self.root / "sources" / "wire.xml").write_text(
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Wire</title>'
            f"<link>https://wire.example.org/</link><description>x</description>{body}</channel></rss>",
            encoding="utf-8",
        )

    def fetch(self, at: dt.datetime) -> None:
        config = self.config
        with pipeline.open_store(config) as store:
            lines = pipeline.fetch_all(config, store, at)
        assert all(line.result.status.value == "ok" for line in lines), [line.result.error for line in lines]

    def run(self, at: dt.datetime) -> pipeline.RunReport:
        """``digest run`` at ``at``."""
        config = self.config
        with pipeline.open_store(config) as store:
            return pipeline.run(config, store, clock=clock_at(at))

    def send(self, week: IsoWeek, at: dt.datetime) -> pipeline.SendSummary:
        """``digest send --week`` at ``at``."""
        config = self.config
        with pipeline.open_store(config) as store:
            return pipeline.send_issue(config, store, (week,), clock=clock_at(at))

    def frozen(self) -> dict[str, Issue]:
        """Every frozen issue, by key."""
        config = self.config
        out: dict[str, Issue] = {}
        with pipeline.open_store(config) as store:
            keys = sorted({r.issue_key for r in store.issue_entries() if not r.expired})
            for key in keys:
                frozen = store.frozen_issue(key)
                assert frozen is not None
                out[key] = issue_from_json(frozen.payload)
        return out


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def bodies(data: bytes) -> tuple[str, str, str]:
    """``(subject, html, text)`` of one received message."""
    msg = parse(data)
    html, text = msg.get_body(("html",)), msg.get_body(("plain",))
    assert html is not None and text is not None
    return str(msg["Subject"]), str(html.get_content()), str(text.get_content())


def messages_for(smtp: SmtpServer, start: int = 0) -> list[tuple[str, str, str]]:
    """The messages ann@ got since ``start`` (every subscriber gets the same ones)."""
    return [bodies(m.data) for m in smtp.messages[start:] if m.rcpt_tos == (PEOPLE[0],)]
