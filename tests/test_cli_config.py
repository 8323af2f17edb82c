"""The CLI's side of the config: exit 2 and one exact line per bad setting, send-time checks, -v/-q, --json."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from digest.cli import cli

SECRET = "test-secret-for-unsubscribe-tokens"
WEEK = "2018-W02"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def error_line(result: Result) -> str:
    """The single stderr line of a failed command, asserted to be exactly one line."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An init'ed working folder (Maildir transport), made the current directory, with a fixed secret."""
    folder = tmp_path / "site"
    assert invoke("init", str(folder)).exit_code == 0
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    return folder


def edit(site: Path, old: str, new: str) -> Path:
    path = site / "digest.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def truncate_before(site: Path, marker: str) -> Path:
    """The config cut short just before ``marker`` (as a partial write would leave it)."""
    path = site / "digest.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index(marker)], encoding="utf-8")
    return path


def without_sender(site: Path) -> Path:
    """The config with its ``[sender]`` table left out, sources and themes kept."""
    path = site / "digest.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("[sender]")] + text[text.index("[[sources]]") :], encoding="utf-8")
    return path


# --- bad settings: exit 2, one exact line ----------------------------------------------------

BAD = [
    (
        "deadline = 30 ",
        "deadline = nan ",
        "fetch.deadline: must be a finite number, got nan",
    ),
    (
        "connections = 4",
        "connectoins = 4",
        "sender.connectoins: unknown key (did you mean 'connections'?)",
    ),
    (
        'theme = "AI & tech competition"',
        'theme = "AI and tech"',
        "sources[3] (\"AI Watch\").theme: no theme named 'AI and tech'; themes: AI & tech competition, "
        "Cybersecurity, Internet governance, Digital economy",
    ),
    (
        'url = "sources/ai-watch.atom.xml"',
        'url = "http://[::1/feed"',
        "sources[3] (\"AI Watch\").url: not a valid URL: 'http://[::1/feed'",
    ),
    (
        'database = "sqlite:///digest.db"',
        'database = "mysql://digest@127.0.0.1/digest"',
        "digest.database: unsupported database 'mysql://': use sqlite:///PATH or postgresql+psycopg://user@host/db",
    ),
    (
        'title = "Cyber Weekly"',
        'title = "Cyber Weekly"\nlist_id = "' + "x" * 300 + '"',
        "digest.list_id: must be at most 255 octets (RFC 2919), got 300",
    ),
    (
        "rate = 0 ",
        'rate = 0\ndkim_selector = "s1"\ndkim_key = "keys/dkim.pem" ',
        "sender.dkim_key: no such file: {site}/keys/dkim.pem",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD, ids=[b[2][:50] for b in BAD])
@pytest.mark.parametrize("command", [("fetch",), ("build", "--week", WEEK), ("send", "--week", WEEK), ("run",)])
def test_a_bad_setting_exits_2_with_one_exact_line(
    site: Path, command: tuple[str, ...], old: str, new: str, message: str
) -> None:
    assert invoke("fetch").exit_code == 0  # the good one
    path = edit(site, old, new)
    result = invoke(*command)
    assert result.exit_code == 2, result.output
    assert error_line(result) == f"error: {path}: " + message.format(site=site)


def test_an_unusable_database_file_is_a_config_error_naming_the_key(site: Path) -> None:
    (site / "state").write_text("a file where the database folder should be")
    path = edit(site, 'database = "sqlite:///digest.db"', 'database = "sqlite:///state/digest.db"')
    result = invoke("fetch")
    assert result.exit_code == 2
    assert error_line(result).startswith(
        f"error: {path}: digest.database: cannot create the folder of database {site}/state/digest.db: "
    )


def test_an_unreachable_postgres_is_a_config_error_naming_the_key_without_the_password(site: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+psycopg://digest:s3cret@127.0.0.1:{port}/digest"
    path = edit(site, 'database = "sqlite:///digest.db"', f'database = "{url}"')
    result = invoke("fetch")
    assert result.exit_code == 2
    line = error_line(result)
    assert line.startswith(
        f"error: {path}: digest.database: cannot connect to database postgresql+psycopg://digest:***@127.0.0.1:{port}"
    )
    assert "s3cret" not in result.output


def test_a_file_that_is_not_a_database_is_a_config_error_naming_the_key(site: Path) -> None:
    (site / "digest.db").write_bytes(b"not a database\n" * 300)
    result = invoke("fetch")
    assert result.exit_code == 2
    assert error_line(result).startswith(f"error: {site / 'digest.toml'}: digest.database: database {site}/digest.db")


def test_a_missing_dkim_key_no_longer_fails_while_sending(site: Path) -> None:
    key = site / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    edit(site, "rate = 0 ", 'rate = 0\ndkim_selector = "s1"\ndkim_key = "dkim.pem" ')
    assert invoke("fetch").exit_code == 0
    assert invoke("build", "--week", WEEK).exit_code == 0
    key.unlink()
    result = invoke("send", "--week", WEEK)
    assert result.exit_code == 2
    assert error_line(result) == f"error: {site / 'digest.toml'}: sender.dkim_key: no such file: {key}"
    assert not (site / "outbox").exists()


# --- what sending needs ----------------------------------------------------------------------

NO_SENDER = "no [sender] table, so nothing can be sent (is the file cut short?); "


@pytest.mark.parametrize("command", [("send", "--week", WEEK), ("run",), ("schedule",)])
def test_a_config_cut_short_before_sender_cannot_send(site: Path, command: tuple[str, ...]) -> None:
    path = truncate_before(site, "[sender]")
    result = invoke(*command)
    assert result.exit_code == 2, result.output
    assert error_line(result) == (
        f"error: {path}: sender: {NO_SENDER}" + 'add [sender] with transport = "maildir" or "smtp"'
    )
    assert not (site / "outbox").exists()


def test_a_config_without_sender_still_builds_and_dry_runs(site: Path) -> None:
    without_sender(site)
    assert invoke("fetch").exit_code == 0
    assert invoke("build", "--week", WEEK).exit_code == 0
    dry = invoke("send", "--week", WEEK, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert not (site / "outbox").exists()


def smtp_to(site: Path, host: str, base_url: str) -> Path:
    edit(site, 'transport = "maildir"', 'transport = "smtp"')
    edit(site, 'host = "127.0.0.1"', f'host = "{host}"')
    return edit(site, 'base_url = "http://127.0.0.1:8025"', f'base_url = "{base_url}"')


@pytest.mark.parametrize("command", [("send", "--week", WEEK), ("run",), ("schedule",)])
def test_smtp_to_a_public_relay_needs_an_https_base_url(site: Path, command: tuple[str, ...]) -> None:
    path = smtp_to(site, "smtp.relay.invalid", "http://digest.newsroom.org")
    result = invoke(*command)
    assert result.exit_code == 2, result.output
    assert error_line(result) == (
        f"error: {path}: digest.base_url: must be an https URL to send over SMTP to smtp.relay.invalid "
        "(Gmail and Yahoo need https one-click unsubscribe links), got 'http://digest.newsroom.org'"
    )
    # Checked before anything: no database, no connection attempt.
    assert not (site / "digest.db").exists()


def test_previewing_a_public_relay_config_needs_no_https(site: Path) -> None:
    smtp_to(site, "smtp.relay.invalid", "http://digest.newsroom.org")
    assert invoke("fetch").exit_code == 0
    assert invoke("build", "--week", WEEK).exit_code == 0


def test_example_org_sender_warns_when_sending_to_a_public_relay(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No secret: the send stops at the next check, before any connection, so the warning can be seen alone.
    monkeypatch.delenv("DIGEST_SECRET")
    path = smtp_to(site, "smtp.relay.invalid", "https://digest.newsroom.org")
    result = invoke("send", "--week", WEEK)
    assert result.exit_code == 2
    warning, error = result.stderr.strip().splitlines()
    assert warning == (
        f"warning: {path}: sender.from: 'Cyber Weekly <digest@example.org>' is still at example.org; "
        "receivers will reject or junk it (set your own)"
    )
    assert error.startswith(f"error: {path}: digest.secret: not set")
    quiet = invoke("-q", "send", "--week", WEEK)
    assert quiet.exit_code == 2
    assert error_line(quiet) == error


def test_a_maildir_send_says_where_the_messages_went(site: Path) -> None:
    assert invoke("fetch").exit_code == 0
    result = invoke("send", "--week", WEEK)
    assert result.exit_code == 0, result.output
    outbox = site / "outbox"
    assert f"issue {WEEK} into {outbox}: 4 sent" in result.stdout
    assert len(list((outbox / "new").iterdir())) == 4


# --- --json ----------------------------------------------------------------------------------


def document(result: Result) -> dict[str, Any]:
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    doc: dict[str, Any] = json.loads(lines[0])
    assert doc["exit_code"] == result.exit_code
    return doc


def test_fetch_json_is_one_document_with_counts(site: Path) -> None:
    first = document(invoke("fetch", "--json"))
    assert first["command"] == "fetch" and first["problems"] == []
    assert first["totals"] == {"sources": 3, "new": 17, "updated": 0, "unchanged": 0, "failed": 0}
    by_name = {s["source"]: s for s in first["sources"]}
    assert by_name["China-US Focus: Cyber"]["new"] == 10
    assert by_name["China-US Focus: Cyber"]["status"] == "ok" and by_name["China-US Focus: Cyber"]["error"] is None
    again = document(invoke("fetch", "--json"))
    assert again["totals"]["new"] == 0 and again["totals"]["unchanged"] == 17


def test_fetch_json_reports_a_failed_source_and_exits_1(site: Path) -> None:
    (site / "sources" / "ai-watch.atom.xml").unlink()
    result = invoke("fetch", "--json")
    assert result.exit_code == 1
    doc = document(result)
    assert doc["totals"]["failed"] == 1
    assert len(doc["problems"]) == 1 and doc["problems"][0].startswith("AI Watch: failed: ")


def test_send_json_is_one_document_with_counts(site: Path) -> None:
    assert invoke("fetch").exit_code == 0
    doc = document(invoke("send", "--week", WEEK, "--json"))
    assert {k: doc[k] for k in ("command", "issue", "dry_run", "outbox", "planned", "due", "sent")} == {
        "command": "send",
        "issue": WEEK,
        "dry_run": False,
        "outbox": str(site / "outbox"),
        "planned": 4,
        "due": 4,
        "sent": 4,
    }
    assert (doc["failed_permanent"], doc["failed_temporary"], doc["unknown"], doc["failures"]) == (0, 0, 0, [])
    assert {state: n for state, n in doc["states"].items() if n} == {"sent": 4}
    again = document(invoke("send", "--week", WEEK, "--json"))
    assert (again["due"], again["sent"]) == (0, 0)


def test_run_json_is_one_document(site: Path) -> None:
    result = invoke("run", "--json")
    doc = document(result)
    assert doc["command"] == "run"
    assert doc["fetch"]["totals"]["new"] == 17
    # Today's last complete week has no sample entries: nothing is sent, and the report says why.
    assert doc["sent"] is None and doc["resumed"] == []
    assert "fewer than min_entries" in doc["skipped"]


def test_json_still_prints_with_quiet(site: Path) -> None:
    result = invoke("-q", "fetch", "--json")
    assert document(result)["totals"]["new"] == 17
    assert result.stderr == ""


# --- -v / -q ---------------------------------------------------------------------------------


def test_verbose_shows_info_and_debug_logs(site: Path) -> None:
    plain = invoke("fetch")
    assert "digest.config" not in plain.stderr
    verbose = invoke("-v", "fetch")
    assert verbose.exit_code == 0
    assert f"DEBUG digest.config: loaded {site / 'digest.toml'}: 3 source(s), 4 theme(s)" in verbose.stderr
    assert "INFO digest.pipeline.gather: opened database sqlite:" in verbose.stderr
    assert "│" in verbose.stdout  # the report is still there


def test_quiet_prints_errors_only(site: Path) -> None:
    quiet = invoke("--quiet", "fetch")
    assert quiet.exit_code == 0
    assert (quiet.stdout, quiet.stderr) == ("", "")
    (site / "sources" / "ai-watch.atom.xml").unlink()
    failed = invoke("-q", "fetch")
    assert failed.exit_code == 1 and failed.stdout == ""


def test_verbose_and_quiet_exclude_each_other(site: Path) -> None:
    result = invoke("-v", "-q", "fetch")
    assert result.exit_code == 2
    assert "-v/--verbose and -q/--quiet exclude each other" in result.stderr


def test_logging_is_restored_after_a_command(site: Path) -> None:
    root = logging.getLogger()
    before = (root.level, list(root.handlers), logging.getLogger("digest").level)
    invoke("-vv", "fetch")
    invoke("-q", "fetch")
    assert (root.level, list(root.handlers), logging.getLogger("digest").level) == before
