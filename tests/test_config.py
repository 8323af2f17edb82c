"""digest.toml → Config: defaults, paths, and one-line errors naming file and key."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import (
    BouncesSettings,
    Config,
    DedupSettings,
    DigestSettings,
    EditorialSettings,
    FetchSettings,
    IssueSettings,
    RelaySettings,
    SenderSettings,
    StoreSettings,
    SubscribeSettings,
    UpdatesSettings,
    WebSettings,
    WorkersSettings,
    check_sending,
    find_config,
    load_config,
    parse_duration,
)
from digest.configspec import fields_of
from digest.errors import ConfigError
from digest.models import ListingFormat, SourceKind
from digest.netutil import is_loopback_host
from digest.resources import demo_data


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problem(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    """The message of the ConfigError that ``text`` raises, without the leading ``<file>: ``."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == 2
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


def test_bundled_config_loads_with_relative_paths_resolved() -> None:
    config = load_config(demo_data() / "digest.toml")
    assert config.digest.title == "Cyber Weekly"
    assert config.digest.timezone == "Asia/Shanghai"
    listing = config.sources[0]
    assert listing.kind is SourceKind.LISTING and listing.format is ListingFormat.TEXT
    assert Path(listing.url).is_absolute() and listing.url.endswith("sources/china-us-focus-cyber.txt")
    assert config.digest.database == "sqlite:///" + str(demo_data() / "digest.db")
    assert config.themes[0].name == "AI & tech competition"
    assert config.sources[2].theme == "AI & tech competition"
    assert config.absent == frozenset(
        {"issue", "dedup", "updates", "editorial", "bounces", "web", "workers", "subscribe", "store"}
    )


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.sources == () and config.themes == ()
    assert config.sender.transport == "maildir"
    assert config.sender.maildir == tmp_path / "outbox"
    assert config.digest.schedule_parts == ("mon", 8, 0)
    assert config.digest.database == f"sqlite:///{tmp_path / 'digest.db'}"
    assert "sender" in config.absent


def test_every_default_is_the_dataclass_default(tmp_path: Path) -> None:
    """The loader fills nothing of its own: an empty file gives what the dataclasses say."""
    config = load_config(write(tmp_path, ""), env={})
    for table in (config.fetch, config.issue, config.dedup, config.updates):
        assert table == type(table)()
    assert dataclasses.replace(config.sender, maildir=Path("outbox")) == SenderSettings()
    assert config.sender.retry_for == dt.timedelta(hours=72)
    assert config.fetch.allow_private == () and config.fetch.max_entries == 500
    assert config.issue == IssueSettings(min_entries=1, min_per_theme=1, max_hold_weeks=3, max_entries=60)
    assert config.dedup == DedupSettings(enabled=True, window_hours=72.0, title_ratio=0.85, text_jaccard=0.6)


def test_every_settings_field_has_a_spec() -> None:
    for cls in (DigestSettings, FetchSettings, IssueSettings, DedupSettings, UpdatesSettings, SenderSettings):
        specs = {f.attr for f in fields_of(cls)}
        assert specs == {f.name for f in dataclasses.fields(cls)}, cls


def test_every_key_is_read(tmp_path: Path) -> None:
    key = tmp_path / "dkim.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "tpl").mkdir()  # a templates folder named in the config must exist
    text = """
        [digest]
        title = " Cyber Weekly "
        timezone = "Europe/Berlin"
        schedule = "TUE 09:30"
        database = "postgresql+psycopg://digest:pw@127.0.0.1:5432/digest"
        base_url = "https://digest.example.net/"
        min_entries = 4
        list_id = "Cyber <cyber.example.net>"
        templates = "tpl"
        subscribers = "/srv/subs"
        [fetch]
        connect_timeout = 2.5
        deadline = 20
        max_bytes = 1000
        max_redirects = 0
        concurrency = 2
        user_agent = "ua/1"
        broken_ratio = 0
        allow_private = ["127.0.0.1", "10.0.0.0/8"]
        max_entries = 10
        max_text = 100
        alert_after = 1
        [issue]
        min_per_theme = 2
        max_hold_weeks = 0
        max_entries = 5
        [dedup]
        enabled = false
        window_hours = 24
        title_ratio = 1
        text_jaccard = 0.5
        prefer = ["A"]
        [updates]
        policy = "section"
        [editorial]
        approval = "required"
        editors = ["Ed@Example.NET", "chief@example.net"]
        hold_timeout = "36h"
        on_timeout = "send"
        [sender]
        from = "Cyber <cyber@example.net>"
        transport = "smtp"
        host = "relay.example.net"
        port = 587
        security = "starttls"
        username = "u"
        connections = 2
        rate = 1.5
        maildir = "box"
        per_connection = 10
        unsubscribe_mailto = "leave@example.net"
        dkim_selector = "s1"
        dkim_key = "dkim.pem"
        resend_unknown = true
        max_attempts = 2
        timeout = 5
        retry_for = "2d"
        [bounces]
        address = "bounces@example.net"
        verp = true
        imap_host = "imap.example.net"
        imap_port = 143
        imap_security = "starttls"
        imap_user = "b"
        imap_folder = "Bounces"
        imap_processed = "Done"
        threshold = 2
        stale_after = "7d"
        [web]
        archive = "public"
        archive_feed = "full"
        [subscribe]
        enabled = true
        confirm_ttl = "24h"
        purge_unconfirmed_after = "3d"
        consent_text = "I agree."
        record_ip = true
        themes_selectable = false
        [workers]
        enabled = false
        batch_size = 50
        stalled_after = 5
        plan_cron = "*/5 * * * *"
        [store]
        keep_deliveries = "30d"
        keep_entries = "2w"
        [[sender.relays]]
        name = "eu"
        host = "eu.relay.example.net"
        port = 587
        security = "starttls"
        username = "eu-user"
        connections = 8
        rate = 2.5
        [[sources]]
        name = "A"
        url = "https://example.net/feed"
    """
    text = "\n".join(line.strip() for line in text.splitlines())
    env = {"DIGEST_SECRET": "k", "DIGEST_SMTP_PASSWORD": "p", "DIGEST_IMAP_PASSWORD": "i"}
    c = load_config(write(tmp_path, text), env=env)
    assert c.digest == DigestSettings(
        title="Cyber Weekly",
        timezone="Europe/Berlin",
        schedule="tue 09:30",
        database="postgresql+psycopg://digest:pw@127.0.0.1:5432/digest",
        base_url="https://digest.example.net",
        min_entries=4,
        secret="k",
        list_id="Cyber <cyber.example.net>",
        templates=tmp_path / "tpl",
        subscribers=Path("/srv/subs"),
    )
    assert c.fetch == FetchSettings(2.5, 20.0, 1000, 0, 2, "ua/1", 0.0, ("127.0.0.1", "10.0.0.0/8"), 10, 100, 1)
    # [digest] min_entries feeds [issue] min_entries when [issue] does not set it.
    assert c.issue == IssueSettings(min_entries=4, min_per_theme=2, max_hold_weeks=0, max_entries=5)
    assert c.dedup == DedupSettings(False, 24.0, 1.0, 0.5, ("A",))
    assert c.updates == UpdatesSettings("section")
    assert c.editorial == EditorialSettings(
        "required", ("Ed@example.net", "chief@example.net"), dt.timedelta(hours=36), "send"
    )
    assert dataclasses.replace(c.sender, relays=()) == SenderSettings(
        "Cyber <cyber@example.net>",
        "smtp",
        "relay.example.net",
        587,
        "starttls",
        "u",
        "p",
        2,
        1.5,
        tmp_path / "box",
        10,
        "leave@example.net",
        "s1",
        key,
        True,
        2,
        5.0,
        dt.timedelta(days=2),
    )
    assert c.bounces == BouncesSettings(
        "bounces@example.net",
        True,
        None,
        "imap.example.net",
        143,
        "starttls",
        "b",
        "i",
        "Bounces",
        "Done",
        2.0,
        dt.timedelta(days=7),
    )
    assert c.web == WebSettings("public", "full")
    assert c.subscribe == SubscribeSettings(True, dt.timedelta(hours=24), dt.timedelta(days=3), "I agree.", True, False)
    assert c.workers == WorkersSettings(False, 50, 5.0, "*/5 * * * *")
    assert c.store == StoreSettings(dt.timedelta(days=30), dt.timedelta(weeks=2))
    assert c.sender.relays == (RelaySettings("eu", "eu.relay.example.net", 587, "starttls", "eu-user", "p", 8, 2.5),)
    assert c.absent == frozenset()


def test_an_upper_case_scheme_is_read_as_http(tmp_path: Path) -> None:
    text = '[digest]\nbase_url = "HTTPS://E.org/"\n[[sources]]\nname = "A"\nurl = "HTTP://e.org/feed"\n'
    config = load_config(write(tmp_path, text))
    assert config.digest.base_url == "https://E.org"
    assert config.sources[0].url == "http://e.org/feed" and config.sources[0].is_remote


def test_issue_min_entries_wins_over_the_digest_alias(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[digest]\nmin_entries = 4\n[issue]\nmin_entries = 2\n"))
    assert (config.digest.min_entries, config.issue.min_entries) == (4, 2)


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[sender]\nusername = "u"\n')
    config = load_config(path, env={"DIGEST_SMTP_PASSWORD": "s3cret", "DIGEST_SECRET": "k"})
    assert config.sender.password == "s3cret"
    assert config.digest.secret == "k"
    # The environment wins over the file; an empty variable does not count.
    path = write(tmp_path, '[digest]\nsecret = "from-file"\n')
    assert load_config(path, env={"DIGEST_SECRET": "from-env"}).digest.secret == "from-env"
    assert load_config(path, env={"DIGEST_SECRET": ""}).digest.secret == "from-file"


def test_a_password_in_the_file_is_an_unknown_key(tmp_path: Path) -> None:
    assert problem(tmp_path, '[sender]\npassword = "x"') == (
        "sender.password: not read from the file: set $DIGEST_SMTP_PASSWORD"
    )


CYBER = '[[themes]]\nname = "Cybersecurity"\nkeywords = ["x"]'
# Each hostile value next to a good one: the good one loads, the bad one is exactly this message.
CASES = [
    # unknown keys and sections, with "did you mean"
    (
        '[digest]\nschedule = "mon 08:00"',
        '[digest]\nshedule = "mon 08:00"',
        "digest.shedule: unknown key (did you mean 'schedule'?)",
    ),
    (None, '[digest]\ncolor = "red"', "digest.color: unknown key"),
    ('[sender]\nfrom = "a@b.org"', '[sendr]\nfrom = "a@b.org"', "sendr: unknown section (did you mean 'sender'?)"),
    ("[dedup]\nenabled = true", "[dedupe]\nenabled = true", "dedupe: unknown section (did you mean 'dedup'?)"),
    ("[fetch]\ndeadline = 5", "[fetch]\ndeadlien = 5", "fetch.deadlien: unknown key (did you mean 'deadline'?)"),
    ("[fetch]\ndeadline = 5", "fetch = 5", "fetch: must be a table"),
    # types
    ("[digest]\nmin_entries = 1", "[digest]\nmin_entries = true", "digest.min_entries: must be int, got True"),
    ("[digest]\nmin_entries = 1", "[digest]\nmin_entries = 1.5", "digest.min_entries: must be int, got 1.5"),
    ("[fetch]\ndeadline = 5", '[fetch]\ndeadline = "5"', "fetch.deadline: must be a number, got '5'"),
    ("[dedup]\nenabled = false", '[dedup]\nenabled = "no"', "dedup.enabled: must be true or false, got 'no'"),
    # numbers: timeouts > 0, finite, counts at their minimum, ports
    (
        "[fetch]\nconnect_timeout = 0.5",
        "[fetch]\nconnect_timeout = 0",
        "fetch.connect_timeout: must be greater than 0, got 0",
    ),
    ("[fetch]\ndeadline = 30", "[fetch]\ndeadline = -1", "fetch.deadline: must be greater than 0, got -1"),
    ("[fetch]\ndeadline = 30", "[fetch]\ndeadline = nan", "fetch.deadline: must be a finite number, got nan"),
    ("[fetch]\ndeadline = 30", "[fetch]\ndeadline = inf", "fetch.deadline: must be a finite number, got inf"),
    ("[fetch]\ndeadline = 30", "[fetch]\ndeadline = 1e300", "fetch.deadline: must be at most 86400, got 1e+300"),
    (
        "[fetch]\nconnect_timeout = 1",
        "[fetch]\nconnect_timeout = -inf",
        "fetch.connect_timeout: must be a finite number, got -inf",
    ),
    ("[fetch]\nmax_bytes = 1", "[fetch]\nmax_bytes = 0", "fetch.max_bytes: must be at least 1, got 0"),
    (
        "[fetch]\nmax_redirects = 0",
        "[fetch]\nmax_redirects = 21",
        "fetch.max_redirects: must be between 0 and 20, got 21",
    ),
    ("[fetch]\nconcurrency = 1", "[fetch]\nconcurrency = 0", "fetch.concurrency: must be between 1 and 256, got 0"),
    (
        "[fetch]\nbroken_ratio = 1",
        "[fetch]\nbroken_ratio = 1.5",
        "fetch.broken_ratio: must be between 0 and 1, got 1.5",
    ),
    ("[fetch]\nmax_entries = 1", "[fetch]\nmax_entries = 0", "fetch.max_entries: must be at least 1, got 0"),
    ("[fetch]\nmax_text = 1", "[fetch]\nmax_text = -5", "fetch.max_text: must be at least 1, got -5"),
    ("[fetch]\nalert_after = 1", "[fetch]\nalert_after = 0", "fetch.alert_after: must be at least 1, got 0"),
    (
        '[fetch]\nallow_private = ["::1"]',
        '[fetch]\nallow_private = ["10.0.0.0/33"]',
        "fetch.allow_private: not an address or CIDR: '10.0.0.0/33'",
    ),
    (
        '[fetch]\nuser_agent = "ua"',
        '[fetch]\nuser_agent = "ua\\r\\nX-Evil: 1"',
        "fetch.user_agent: must be one line without control characters, got 'ua\\r\\nX-Evil: 1'",
    ),
    ("[sender]\nport = 65535", "[sender]\nport = 70000", "sender.port: must be a TCP port (1-65535), got 70000"),
    ("[sender]\nport = 1", "[sender]\nport = 0", "sender.port: must be a TCP port (1-65535), got 0"),
    ("[sender]\ntimeout = 0.1", "[sender]\ntimeout = 0", "sender.timeout: must be greater than 0, got 0"),
    ("[sender]\ntimeout = 10", "[sender]\ntimeout = nan", "sender.timeout: must be a finite number, got nan"),
    ("[sender]\nrate = 0", "[sender]\nrate = -1", "sender.rate: must be at least 0, got -1"),
    ("[sender]\nrate = 2.5", "[sender]\nrate = inf", "sender.rate: must be a finite number, got inf"),
    ("[sender]\nconnections = 1", "[sender]\nconnections = 0", "sender.connections: must be between 1 and 100, got 0"),
    (
        "[sender]\nper_connection = 1",
        "[sender]\nper_connection = 0",
        "sender.per_connection: must be at least 1, got 0",
    ),
    ("[sender]\nmax_attempts = 1", "[sender]\nmax_attempts = 0", "sender.max_attempts: must be at least 1, got 0"),
    (
        '[sender]\nretry_for = "90m"',
        '[sender]\nretry_for = "72"',
        "sender.retry_for: must be a duration like '90s', '15m', '72h' or '7d', got '72'",
    ),
    (
        '[sender]\nretry_for = "520w"',
        '[sender]\nretry_for = "99999999w"',
        "sender.retry_for: must be at most ten years, got '99999999w'",
    ),
    (
        '[sender]\nretry_for = "1h"',
        '[sender]\nretry_for = "0h"',
        "sender.retry_for: must be a duration like '90s', '15m', '72h' or '7d', got '0h'",
    ),
    ("[issue]\nmin_entries = 0", "[issue]\nmin_entries = -1", "issue.min_entries: must be at least 0, got -1"),
    ("[issue]\nmax_entries = 1", "[issue]\nmax_entries = 0", "issue.max_entries: must be at least 1, got 0"),
    ("[issue]\nmax_hold_weeks = 0", "[issue]\nmax_hold_weeks = -1", "issue.max_hold_weeks: must be at least 0, got -1"),
    ("[dedup]\nwindow_hours = 0.5", "[dedup]\nwindow_hours = 0", "dedup.window_hours: must be greater than 0, got 0"),
    (
        "[dedup]\nwindow_hours = 0.5",
        "[dedup]\nwindow_hours = nan",
        "dedup.window_hours: must be a finite number, got nan",
    ),
    ("[dedup]\ntitle_ratio = 1", "[dedup]\ntitle_ratio = 1.5", "dedup.title_ratio: must be at most 1, got 1.5"),
    ("[dedup]\ntext_jaccard = 0.1", "[dedup]\ntext_jaccard = 0", "dedup.text_jaccard: must be greater than 0, got 0"),
    # choices
    (
        '[updates]\npolicy = "section"',
        '[updates]\npolicy = "always"',
        "updates.policy: must be 'ignore' or 'section', got 'always'",
    ),
    (
        '[sender]\ntransport = "smtp"',
        '[sender]\ntransport = "pigeon"',
        "sender.transport: must be 'smtp' or 'maildir', got 'pigeon'",
    ),
    (
        '[sender]\nsecurity = "tls"',
        '[sender]\nsecurity = "ssl"',
        "sender.security: must be 'none', 'starttls' or 'tls', got 'ssl'",
    ),
    # [digest]
    (
        '[digest]\ntimezone = "Asia/Shanghai"',
        '[digest]\ntimezone = "Mars/Olympus"',
        "digest.timezone: unknown time zone 'Mars/Olympus' (use an IANA name like Europe/Berlin)",
    ),
    (
        '[digest]\nschedule = "sun 23:59"',
        '[digest]\nschedule = "someday"',
        "digest.schedule: must look like 'mon 08:00', got 'someday'",
    ),
    ('[digest]\ntitle = "T"', '[digest]\ntitle = "  "', "digest.title: must not be empty"),
    (
        '[digest]\nbase_url = "https://e.org/d"',
        '[digest]\nbase_url = "ftp://e.org"',
        "digest.base_url: must be an http(s) URL, got 'ftp://e.org'",
    ),
    (
        '[digest]\nbase_url = "http://[::1]:8025"',
        '[digest]\nbase_url = "http://[::1"',
        "digest.base_url: not a valid URL: 'http://[::1'",
    ),
    (
        '[digest]\nbase_url = "http://e.org:8080"',
        '[digest]\nbase_url = "http://e.org:99999"',
        "digest.base_url: not a valid URL: 'http://e.org:99999'",
    ),
    (
        '[digest]\nlist_id = "' + "a" * 255 + '"',
        '[digest]\nlist_id = "' + "a" * 256 + '"',
        "digest.list_id: must be at most 255 octets (RFC 2919), got 256",
    ),
    (
        '[digest]\nlist_id = "' + "é" * 127 + '"',
        '[digest]\nlist_id = "' + "é" * 128 + '"',
        "digest.list_id: must be at most 255 octets (RFC 2919), got 256",
    ),
    (
        '[digest]\nlist_id = "A <a.e.org>"',
        '[digest]\nlist_id = "A\\n<a.e.org>"',
        "digest.list_id: must be one line without control characters, got 'A\\n<a.e.org>'",
    ),
    (
        '[digest]\nbase_url = "https://e.org/digest/"',
        '[digest]\nbase_url = "https://e.org/d?utm=1"',
        "digest.base_url: must not have a query or fragment (links are made under it), got 'https://e.org/d?utm=1'",
    ),
    # the database
    (
        '[digest]\ndatabase = "sqlite:///state/d.db"',
        '[digest]\ndatabase = "mysql://u@h/db"',
        "digest.database: unsupported database 'mysql://': use sqlite:///PATH or postgresql+psycopg://user@host/db",
    ),
    (
        '[digest]\ndatabase = "sqlite:////tmp/d.db"',
        '[digest]\ndatabase = "sqlite://"',
        "digest.database: the SQLite database must be a file path (sqlite:///digest.db), got 'sqlite://'",
    ),
    (
        None,
        '[digest]\ndatabase = "sqlite:///:memory:"',
        "digest.database: the SQLite database must be a file path (sqlite:///digest.db), got 'sqlite:///:memory:'",
    ),
    (
        '[digest]\ndatabase = "postgresql+psycopg://u:pw@h/db"',
        '[digest]\ndatabase = "postgresql+psycopg2://u:pw@h/db"',
        "digest.database: the driver 'psycopg2' for 'postgresql+psycopg2://' is not installed: use sqlite:///PATH or postgresql+psycopg://user@host/db",
    ),
    (
        None,
        '[digest]\ndatabase = "postgresql+psycopg://u:pw@h:99x/db"',
        "digest.database: not a valid database URL: 'postgresql+psycopg://u:***@h:99x/db'",
    ),
    (
        None,
        '[digest]\ndatabase = "postgresql+psycopg://u:pw@/db"',
        "digest.database: names no host: 'postgresql+psycopg://u:***@/db'",
    ),
    (
        None,
        '[digest]\ndatabase = "digest.db"',
        "digest.database: must be a database URL like sqlite:///digest.db, got 'digest.db'",
    ),
    # [sender]
    (
        '[sender]\nfrom = "D <d@e.org>"',
        '[sender]\nfrom = "nobody"',
        "sender.from: must be an address like 'Name <digest@example.org>', got 'nobody'",
    ),
    (
        '[sender]\nfrom = "D <d@e.org>"',
        '[sender]\nfrom = "d@e.org\\r\\nBcc: x@y.org"',
        "sender.from: must be one line without control characters, got 'd@e.org\\r\\nBcc: x@y.org'",
    ),
    ('[sender]\nhost = "relay"', '[sender]\nhost = ""', "sender.host: must not be empty"),
    (
        '[sender]\ndkim_selector = "s1"\ndkim_key = "key.pem"',
        '[sender]\ndkim_selector = "s1"\ndkim_key = "missing.pem"',
        "sender.dkim_key: no such file: {dir}/missing.pem",
    ),
    (
        '[sender]\ndkim_selector = "s1"\ndkim_key = "key.pem"',
        '[sender]\ndkim_key = "key.pem"',
        "sender.dkim_key: dkim_key and dkim_selector go together",
    ),
    # [[sources]]: counted from 1, named
    (
        '[[sources]]\nname = "Cyber Feed"\nurl = "https://e.org/f"',
        '[[sources]]\nname = "Cyber Feed"\nurl = "ftp://e.org/feed"',
        "sources[1] (\"Cyber Feed\").url: only http(s) URLs or local paths are allowed, got 'ftp://e.org/feed'",
    ),
    (
        None,
        '[[sources]]\nname = "Cyber Feed"\nurl = "http://[::1"',
        "sources[1] (\"Cyber Feed\").url: not a valid URL: 'http://[::1'",
    ),
    (
        None,
        '[[sources]]\nname = "A"\nurl = "a.xml"\n[[sources]]\nname = "B"\nurl = "http://e.org:99999/x"',
        "sources[2] (\"B\").url: not a valid URL: 'http://e.org:99999/x'",
    ),
    (None, '[[sources]]\nname = "x"', 'sources[1] ("x").url: is required'),
    (None, '[[sources]]\nurl = "a.xml"', "sources[1].name: is required"),
    (None, '[[sources]]\nname = "  "\nurl = "a.xml"', "sources[1].name: is required"),
    (
        None,
        '[[sources]]\nname = "x"\nkind = "tweet"\nurl = "a.xml"',
        "sources[1] (\"x\").kind: must be 'feed' or 'listing', got 'tweet'",
    ),
    (
        None,
        '[[sources]]\nname = "x"\nurl = "a.xml"\nthem = "AI"',
        "sources[1] (\"x\").them: unknown key (did you mean 'theme'?)",
    ),
    (
        None,
        '[[sources]]\nname = "x"\nurl = "a.xml"\n[[sources]]\nname = "x"\nurl = "b.xml"',
        "sources[2] (\"x\").name: source 'x' is defined twice",
    ),
    (None, '[sources]\nname = "x"', "sources: must be an array of tables ([[sources]])"),
    (
        None,
        '[[sources]]\nname = "x"\nkind = "listing"\nurl = "a.html"',
        'sources[1] ("x").selectors.item: an html listing needs [sources.selectors] with at least item',
    ),
    (
        '[[sources]]\nname = "x"\nkind = "listing"\nurl = "a.html"\n[sources.selectors]\nitem = "li"',
        '[[sources]]\nname = "x"\nkind = "listing"\nurl = "a.html"\n[sources.selectors]\nitem = "li[["',
        "sources[1] (\"x\").selectors.item: invalid CSS selector 'li[[': ",
    ),
    (
        None,
        '[[sources]]\nname = "x"\nkind = "listing"\nurl = "a.html"\n[sources.selectors]\nitems = "li"',
        "sources[1] (\"x\").selectors.items: unknown key (did you mean 'item'?)",
    ),
    (
        None,
        '[[sources]]\nname = "x"\nurl = "a.xml"\nformat = "html"',
        "sources[1] (\"x\").format: format and selectors apply to kind = 'listing' only",
    ),
    (
        '[[sources]]\nname = "x"\nkind = "listing"\nformat = "text"\nurl = "a.txt"\nrecord = ["date", "summary"]',
        '[[sources]]\nname = "x"\nkind = "listing"\nformat = "text"\nurl = "a.txt"\nrecord = ["summary"]',
        "sources[1] (\"x\").record: must list each of ['authors', 'date', 'link', 'summary', 'title'] "
        "at most once and include 'date', got ['summary']",
    ),
    # a source's theme names a configured theme
    (
        '[[sources]]\nname = "Cyber Feed"\nurl = "f.xml"\ntheme = "Cybersecurity"\n' + CYBER,
        '[[sources]]\nname = "Cyber Feed"\nurl = "f.xml"\ntheme = "Cybersecurty"\n' + CYBER,
        "sources[1] (\"Cyber Feed\").theme: no theme named 'Cybersecurty' (did you mean 'Cybersecurity'?); "
        "themes: Cybersecurity",
    ),
    (
        '[[sources]]\nname = "F"\nurl = "f.xml"\ntheme = "Other"\n[[themes]]\nname = "AI"\nkeywords = ["x"]',
        '[[sources]]\nname = "F"\nurl = "f.xml"\ntheme = "ai"\n[[themes]]\nname = "AI"\nkeywords = ["x"]',
        "sources[1] (\"F\").theme: no theme named 'ai'; themes: AI",
    ),
    # names of sources elsewhere
    (
        '[dedup]\nprefer = ["Cyber Feed"]\n[[sources]]\nname = "Cyber Feed"\nurl = "f.xml"',
        '[dedup]\nprefer = ["Cyber Fed"]\n[[sources]]\nname = "Cyber Feed"\nurl = "f.xml"',
        "dedup.prefer: no source named 'Cyber Fed' (did you mean 'Cyber Feed'?)",
    ),
    (
        '[[sources]]\nname = "Cyber Feed"\nurl = "f.xml"\n[[themes]]\nname = "AI"\nsources = ["cyber feed"]',
        '[[sources]]\nname = "Cyber Feed"\nurl = "f.xml"\n[[themes]]\nname = "AI"\nsources = ["Cyber Fed"]',
        "themes[1] (\"AI\").sources: no source named 'Cyber Fed' (did you mean 'Cyber Feed'?)",
    ),
    # [[themes]]
    (
        '[[themes]]\nname = "AI"\nkeywords = ["ai"]',
        '[[themes]]\nname = "AI"\nkeywords = []',
        "themes[1] (\"AI\"): theme 'AI' can never match: give keywords, phrases, categories or sources",
    ),
    (
        None,
        '[[themes]]\nname = "AI"\nkeywords = ["ai"]\n[[themes]]\nname = "ai"\nkeywords = ["x"]',
        "themes[2] (\"ai\").name: theme 'ai' is defined twice",
    ),
    (None, '[[themes]]\nname = "AI"\nkeywords = [1]', 'themes[1] ("AI").keywords: must be a list of strings, got [1]'),
    (None, '[[themes]]\nkeywords = ["ai"]', "themes[1].name: is required"),
    (None, "[digest\n", "not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 8)"),
]


@pytest.mark.parametrize(("good", "bad", "message"), CASES, ids=[c[2][:60] for c in CASES])
def test_hostile_value_is_one_exact_line_next_to_a_good_one(
    tmp_path: Path, good: str | None, bad: str, message: str
) -> None:
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    if good is not None:
        load_config(write(tmp_path, good), env={})
    got = problem(tmp_path, bad)
    expected = message.format(dir=tmp_path)
    if expected.endswith(": "):
        assert got.startswith(expected), got
    else:
        assert got == expected


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_find_config_prefers_argument_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config(None) == tmp_path / "digest.toml"
    monkeypatch.setenv("DIGEST_CONFIG", str(tmp_path / "env.toml"))
    assert find_config(None) == tmp_path / "env.toml"
    assert find_config(str(tmp_path / "arg.toml")) == tmp_path / "arg.toml"


@pytest.mark.parametrize(
    ("raw", "seconds"), [("90s", 90), ("15m", 900), ("72h", 259200), ("1.5d", 129600), (" 2w ", 1209600)]
)
def test_parse_duration(raw: str, seconds: int) -> None:
    assert parse_duration(raw) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("raw", ["", "72", "h", "-1h", "0s", "1y", "1e3h", "inf h", "99999999999w"])
def test_parse_duration_refuses(raw: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        parse_duration(raw)


# --- what sending needs ---------------------------------------------------------------------

SMTP = '[sender]\nfrom = "D <d@{domain}>"\ntransport = "smtp"\nhost = "{host}"\n[digest]\nbase_url = "{base}"\n'


def sending(tmp_path: Path, text: str) -> tuple[str, ...] | str:
    """The warnings of check_sending, or the ConfigError's message without the file."""
    config = load_config(write(tmp_path, text), env={})
    try:
        return check_sending(config)
    except ConfigError as exc:
        assert "\n" not in str(exc) and exc.exit_code == 2
        return str(exc).removeprefix(f"{config.path}: ")


def test_sending_needs_a_sender_table(tmp_path: Path) -> None:
    assert sending(tmp_path, '[sender]\ntransport = "maildir"\n') == ()
    assert sending(tmp_path, '[digest]\ntitle = "Cut short"\n') == (
        "sender: no [sender] table, so nothing can be sent (is the file cut short?); "
        'add [sender] with transport = "maildir" or "smtp"'
    )
    # A Config made in code has every table.
    assert check_sending(Config(path=tmp_path / "digest.toml")) == ()


def test_smtp_to_a_public_relay_needs_https(tmp_path: Path) -> None:
    ok = SMTP.format(domain="newsroom.org", host="relay.mail.net", base="https://newsroom.org")
    assert sending(tmp_path, ok) == ()
    bad = SMTP.format(domain="newsroom.org", host="relay.mail.net", base="http://newsroom.org")
    assert sending(tmp_path, bad) == (
        "digest.base_url: must be an https URL to send over SMTP to relay.mail.net "
        "(Gmail and Yahoo need https one-click unsubscribe links), got 'http://newsroom.org'"
    )
    # A relay on this machine (a test server, the host's MTA) and a Maildir need neither.
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.53"):
        assert sending(tmp_path, SMTP.format(domain="example.org", host=host, base="http://127.0.0.1:8025")) == ()


def test_smtp_to_a_public_relay_warns_about_example_org(tmp_path: Path) -> None:
    text = SMTP.format(domain="example.org", host="relay.mail.net", base="https://news.example.net")
    path = tmp_path / "digest.toml"
    assert sending(tmp_path, text) == (
        f"{path}: sender.from: 'D <d@example.org>' is still at example.org; "
        "receivers will reject or junk it (set your own)",
    )
    assert len(sending(tmp_path, text.replace("example.org", "lists.example.com"))) == 1
    assert sending(tmp_path, text.replace("example.org", "example.org.uk")) == ()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example.net", False),
        ("127.0.0.1.nip.io", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# --- any value for any key: a Config or one ConfigError line, never another exception --------

_SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=30),
    st.lists(st.text(max_size=10), max_size=3),
)
_KEYS = {
    name: sorted(f.key for f in fields_of(cls) if f.key)
    for name, cls in {
        "digest": DigestSettings,
        "fetch": FetchSettings,
        "issue": IssueSettings,
        "dedup": DedupSettings,
        "updates": UpdatesSettings,
        "sender": SenderSettings,
    }.items()
}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=st.sampled_from(sorted(_KEYS)),
    data=st.data(),
)
def test_any_value_for_any_key_loads_or_is_one_config_error(tmp_path: Path, table: str, data: st.DataObject) -> None:
    keys = data.draw(st.lists(st.sampled_from(_KEYS[table]), min_size=1, max_size=4, unique=True))
    lines = [f"[{table}]"] + [f"{key} = {_toml(data.draw(_SCALARS))}" for key in keys]
    path = write(tmp_path, "\n".join(lines) + "\n")
    try:
        config = load_config(path, env={})
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{path}: ")
        assert exc.exit_code == 2
    else:
        # Whatever loaded is usable as it is: numbers finite, sending checks answer in words.
        for value in dataclasses.astuple(config.fetch) + dataclasses.astuple(config.dedup):
            if isinstance(value, float):
                assert math.isfinite(value)
        try:
            check_sending(config)
        except ConfigError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("tpl", True), ("", True), ("missing", False), ("dkim.pem", False), ("../../../nonexistent\u0000x", False)],
    ids=["folder", "empty-is-default", "missing", "a-file", "hostile"],
)
def test_a_named_templates_folder_must_exist(tmp_path: Path, value: str, ok: bool) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "dkim.pem").write_text("x\n")
    path = tmp_path / "digest.toml"
    path.write_text(f'[digest]\ntitle = "T"\ntemplates = {json.dumps(value)}\n', encoding="utf-8")
    if ok:
        config = load_config(path)
        assert config.templates_dir == (tmp_path / value if value else tmp_path / "templates")
        return
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}: digest.templates: " in str(err.value)
    assert "\n" not in str(err.value)


def test_the_default_templates_folder_may_be_absent(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text('[digest]\ntitle = "T"\n', encoding="utf-8")
    assert not load_config(path).templates_dir.exists()
