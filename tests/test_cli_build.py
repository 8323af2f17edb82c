"""``digest build`` end to end: an init'ed, fetched folder rendered to files, state untouched."""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import re
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from digest.cli import cli

CLI_DATA = Path(__file__).parent / "data" / "cli"
GOLDEN = Path(__file__).parent / "golden" / "2018-W02.eml"
UPDATE_GOLDEN = os.environ.get("DIGEST_UPDATE_GOLDEN") == "1"
SECRET = "test-secret-for-stable-unsubscribe-tokens"
VARIANTS = {
    "all": "ada@example.org",
    "ai-tech-competition-cybersecurity-3945859f": "li.lei@example.org",
    "cybersecurity-23b2d5da": "bob@example.org",
    "digital-economy-internet-governance-ae2f32df": "zoe@example.org",
}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An init'ed and fetched working folder, made the current directory, with a fixed secret."""
    folder = tmp_path / "site"
    assert invoke("init", str(folder)).exit_code == 0
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    fetched = invoke("fetch")
    assert fetched.exit_code == 0, fetched.output
    return folder


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def state_files(folder: Path) -> dict[str, str]:
    """Every file of the working folder outside ``out/`` with its hash (SQLite's -wal/-shm aside)."""
    return {
        str(p.relative_to(folder)): digest_of(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] != "out" and not p.name.endswith(("-wal", "-shm"))
    }


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def scrub(data: bytes) -> bytes:
    """The message without what changes from run to run: Date, Message-ID and the MIME boundary."""
    data = re.sub(rb"(?m)^Date: [^\r\n]*", b"Date: Mon, 15 Jan 2018 08:00:00 +0800", data)
    data = re.sub(rb"(?m)^Message-ID: <[^>\r\n]*>", b"Message-ID: <scrubbed@example.org>", data)
    return re.sub(rb"=_digest_[0-9A-Za-z]+", b"=_digest_BOUNDARY", data)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# --- a good build ----------------------------------------------------------------------------


def test_build_writes_every_variant_and_touches_no_state(site: Path) -> None:
    db = site / "digest.db"
    before = state_files(site)
    db_bytes = db.read_bytes()

    result = invoke("build", "--week", "2018-W02", "--out", "out/")

    assert result.exit_code == 0, result.output
    assert db.read_bytes() == db_bytes
    assert state_files(site) == before
    assert "issue 2018-W02: 7 entries, 4 variant(s)" in result.stdout
    out = site / "out"
    expected = {"index.html"} | {f"2018-W02.{v}{s}" for v in VARIANTS for s in (".html", ".txt", ".eml")}
    assert {p.name for p in out.iterdir()} == expected
    for name in sorted(expected):
        assert f"out/{name}" in result.stdout

    index = (out / "index.html").read_text(encoding="utf-8")
    for variant in VARIANTS:
        assert f'href="2018-W02.{variant}.eml"' in index
    assert "7 entries in 4 sections · 4 variants" in index


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_built_messages_are_well_formed(site: Path, variant: str) -> None:
    assert invoke("build", "--week", "2018-W02", "--out", "out").exit_code == 0
    out = site / "out"
    data = (out / f"2018-W02.{variant}.eml").read_bytes()

    assert all(len(line) <= 998 for line in data.split(b"\r\n")), "a line over 998 octets"
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    msg = parse(data)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert msg["To"].addresses[0].addr_spec == VARIANTS[variant]
    assert msg["From"].addresses[0].addr_spec == "digest@example.org"
    assert "2018" in msg["Subject"]
    unsubscribe = re.fullmatch(r"<(http://127\.0\.0\.1:8025/u/[\w-]+)>", str(msg["List-Unsubscribe"]).strip())
    assert unsubscribe, msg["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    text = parts[0].get_content()
    html = parts[1].get_content()
    for body in (text, html):
        assert "DIGESTx" not in body, "a placeholder was left unfilled"
        assert unsubscribe.group(1) in body
    # The .txt and .html beside the .eml are the same personalised bodies.
    assert (out / f"2018-W02.{variant}.txt").read_text(encoding="utf-8").strip() == text.replace("\r\n", "\n").strip()
    assert "DIGESTx" not in (out / f"2018-W02.{variant}.html").read_text(encoding="utf-8")


def test_all_variant_matches_the_golden_message(site: Path) -> None:
    """The whole wire form of the all-themes sample; DIGEST_UPDATE_GOLDEN=1 rewrites it for review."""
    assert invoke("build", "--week", "2018-W02", "--out", "out").exit_code == 0
    data = scrub((site / "out" / "2018-W02.all.eml").read_bytes())
    if UPDATE_GOLDEN:
        GOLDEN.write_bytes(data)
    assert data == GOLDEN.read_bytes(), f"{GOLDEN} differs; DIGEST_UPDATE_GOLDEN=1 rewrites it"


def test_the_golden_message_reads_as_the_issue() -> None:
    msg = parse(GOLDEN.read_bytes())
    text = next(p for p in msg.iter_parts() if p.get_content_type() == "text/plain").get_content()
    assert msg["To"] == "Ada Lovelace <ada@example.org>"
    assert "Hello Ada Lovelace," in text
    for heading in ("AI & TECH COMPETITION (3)", "CYBERSECURITY (2)", "INTERNET GOVERNANCE (1)", "DIGITAL ECONOMY (1)"):
        assert heading in text


def test_build_since_covers_every_week_to_now(site: Path) -> None:
    result = invoke("build", "--since", "2018-01-08", "--out", "span")
    assert result.exit_code == 0, result.output
    assert re.search(r"issue 2018-W02\.\.\d{4}-W\d{2}: 8 entries, 4 variant\(s\)", result.stdout), result.stdout
    assert len(list((site / "span").glob("2018-W02..*.all.eml"))) == 1


def test_build_as_a_real_process(site: Path) -> None:
    exe = Path(sys.executable).with_name("digest")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(site), "DIGEST_SECRET": SECRET}
    db_bytes = (site / "digest.db").read_bytes()

    done = subprocess.run(
        [str(exe), "build", "--week", "2018-W02", "--out", "proc-out"],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (site / "digest.db").read_bytes() == db_bytes
    assert scrub((site / "proc-out" / "2018-W02.all.eml").read_bytes()) == GOLDEN.read_bytes()


# --- builds that must not happen ---------------------------------------------------------------


def test_week_and_since_together_is_a_usage_error(site: Path) -> None:
    result = invoke("build", "--week", "2018-W02", "--since", "2018-01-01", "--out", "out")
    assert result.exit_code == 2
    assert "--week and --since" in one_line(result.stderr)
    assert not (site / "out").exists()


@pytest.mark.parametrize("week", ["2018-02", "2018-W54", "next week"])
def test_a_malformed_week_is_a_usage_error(site: Path, week: str) -> None:
    result = invoke("build", "--week", week, "--out", "out")
    assert result.exit_code == 2
    assert week in one_line(result.stderr)
    assert not (site / "out").exists()


def test_an_empty_week_builds_nothing(site: Path) -> None:
    result = invoke("build", "--week", "2017-W10", "--out", "out")
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert (
        line == "error: no entries in 2017-W10; the newest week with entries is 2018-W03 (digest build --week 2018-W03)"
    )
    assert result.stdout == ""
    assert not (site / "out").exists()


def test_a_broken_template_fails_before_writing(site: Path) -> None:
    template = site / "templates" / "digest.html.j2"
    template.write_bytes((CLI_DATA / "broken.html.j2").read_bytes())

    result = invoke("build", "--week", "2018-W02", "--out", "out")

    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert f"{template}:3" in line
    assert not (site / "out").exists()


def test_an_unwritable_out_folder_is_one_line(site: Path) -> None:
    (site / "plain-file").write_text("not a folder\n", encoding="utf-8")
    result = invoke("build", "--week", "2018-W02", "--out", "plain-file/out")
    assert result.exit_code == 2
    assert "plain-file/out" in one_line(result.stderr)


def test_since_in_the_future_is_a_usage_error(site: Path) -> None:
    result = CliRunner().invoke(cli, ["build", "--since", "2999-01-01", "--out", "out"])
    assert result.exit_code == 2
    assert "2999-01-01" in one_line(result.stderr)


def test_build_without_a_config_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("build", "--week", "2018-W02")
    assert result.exit_code == 2
    assert "digest.toml" in one_line(result.stderr)
    assert not (tmp_path / "out").exists()


# --- help -----------------------------------------------------------------------------------------


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
    return paths


def test_every_command_has_help() -> None:
    top = invoke("--help")
    assert top.exit_code == 0
    paths = _command_paths(cli)
    for name in ("init", "fetch", "entries", "build", "send", "run", "preview", "serve", "demo", "subscribers"):
        assert (name,) in paths
        assert name in top.stdout
    for path in paths:
        result = invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert result.stdout.startswith(f"Usage: cli {' '.join(path)}"), result.stdout


def test_build_fills_a_personal_subject_everywhere(site: Path) -> None:
    (site / "templates" / "subject.txt.j2").write_text("{{ greeting }} {{ title }} for {{ name }}\n", encoding="utf-8")
    assert invoke("build", "--week", "2018-W02", "--out", "out").exit_code == 0
    out = site / "out"
    index = (out / "index.html").read_text(encoding="utf-8")
    msg = parse((out / "2018-W02.all.eml").read_bytes())
    name = msg["To"].addresses[0].display_name
    assert name and str(msg["Subject"]) == f"Hello {name}, Cyber Weekly for {name}"
    assert f'<p class="subject">Hello {name}, Cyber Weekly for {name}</p>' in index
    for path in out.iterdir():
        assert re.search(rb"X[0-9a-f]{32}|DIGESTx", path.read_bytes()) is None, path.name


def test_send_on_an_empty_week_names_the_newest_week_with_entries(site: Path) -> None:
    for args in (("send", "--week", "2018-W09"), ("send", "--week", "2018-W09", "--dry-run")):
        result = invoke(*args)
        assert result.exit_code == 1
        line = one_line(result.stderr)
        assert (
            line
            == "error: no entries in 2018-W09; the newest week with entries is 2018-W03 (digest send --week 2018-W03)"
        )
        assert result.stdout == ""
    assert not (site / "outbox").exists()
    # The week it names builds.
    assert invoke("build", "--week", "2018-W03", "--out", "out").exit_code == 0


def test_build_with_nothing_stored_says_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "empty"
    assert invoke("init", str(folder)).exit_code == 0
    monkeypatch.chdir(folder)
    result = invoke("build", "--week", "2018-W02", "--out", "out")
    assert result.exit_code == 1
    assert (
        one_line(result.stderr)
        == "error: no entries in 2018-W02; no entries are stored yet (digest fetch gathers them)"
    )
