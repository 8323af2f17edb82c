"""``digest bounces scan|list|reset`` through the CLI, and the [bounces] config beside hostile values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest import pipeline
from digest.cli import cli
from digest.config import load_config
from digest.errors import ConfigError
from digest.models import IsoWeek, SubscriberStatus
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer
from tests.test_bounces import fixture


def invoke(path: Path, *args: str) -> Result:
    return CliRunner(env=ws.ENV).invoke(cli, ["--config", str(path), *args])


@pytest.fixture
def site(tmp_path: Path, smtp_server: SmtpServer) -> Path:
    people = [ws.Row(f"r{i:03d}@example.org", "", "") for i in range(10)]
    extra = '\n[bounces]\naddress = "bounces@example.org"\nmaildir = "bounces"\nthreshold = 1\n'
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, extra=extra)
    config = ws.load(path)
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=clock)
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "bounces" / sub).mkdir(parents=True)
    return path


def test_scan_list_and_reset(site: Path) -> None:
    box = site.parent / "bounces" / "new"
    (box / "1.exim").write_bytes(fixture("exim-failed.eml"))
    (box / "2.arf").write_bytes(fixture("yahoo-arf-abuse.eml"))
    (box / "3.ooo").write_bytes(fixture("out-of-office.eml"))
    dry = invoke(site, "bounces", "scan", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["counts"] == {"hard": 1, "complaint": 1, "autoreply": 1}
    assert len(list(box.iterdir())) == 3
    done = invoke(site, "bounces", "scan")
    assert done.exit_code == 0, done.output
    assert "3 messages read" in done.output and "now bounced: r002@example.org" in done.output
    config = ws.load(site)
    with pipeline.open_store(config) as store:
        status = store.subscriber_status()
    assert status["r002@example.org"] is SubscriberStatus.BOUNCED  # threshold = 1
    assert status["r006@example.org"] is SubscriberStatus.COMPLAINED
    listed = invoke(site, "bounces", "list", "r002@example.org", "--json")
    assert [json.loads(line)["verdict"] for line in listed.output.splitlines()] == ["hard"]
    reset = invoke(site, "bounces", "reset", "r002@example.org")
    assert reset.exit_code == 0 and "removed 1 bounce events" in reset.output
    assert invoke(site, "bounces", "scan").output.strip().endswith("0 messages read: nothing")


def test_scan_without_a_mailbox_is_one_line(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = ws.make_folder(tmp_path, ws.rows(2), port=smtp_server.port)
    result = invoke(path, "bounces", "scan")
    assert result.exit_code == 2 and "no mailbox configured" in result.output


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('address = "not an address"', "bounces.address: must be a plain address"),
        ('address = "b+x@example.org"', "bounces.address: must be a plain address"),
        ("verp = true", "bounces.verp: needs bounces.address"),
        ('maildir = "b"\nimap_host = "imap.example.org"', "bounces.maildir: give maildir or imap_host"),
        ('imap_security = "ssl"', "bounces.imap_security: must be"),
        ("imap_port = 70000", "bounces.imap_port: must be a TCP port"),
        ("threshold = 0", "bounces.threshold: must be greater than 0"),
        ('stale_after = "soon"', "bounces.stale_after: must be a duration"),
        ("bogus = 1", "bounces.bogus: unknown key"),
    ],
)
def test_bad_bounces_config_names_the_key(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(f"[bounces]\n{table}\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(path, env={})
    good = tmp_path / "good.toml"
    good.write_text('[bounces]\naddress = "bounces@example.org"\nverp = true\nimap_host = "127.0.0.1"\n')
    assert load_config(good, env={"DIGEST_IMAP_PASSWORD": "pw"}).bounces.imap_password == "pw"


def test_plaintext_imap_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text('[bounces]\nimap_host = "imap.example.org"\nimap_security = "none"\n')
    config = load_config(path, env={"DIGEST_IMAP_PASSWORD": "pw"})
    from digest.pipeline.bounces import open_mailbox

    with pytest.raises(ConfigError, match="only on loopback"):
        open_mailbox(config)
