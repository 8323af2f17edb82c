"""VERP end to end: each message's MAIL FROM names it, a bounce to it is found by its tag; run scans first."""

from __future__ import annotations

import re
from pathlib import Path

from digest import pipeline
from digest.bounces import tag_of
from digest.models import IsoWeek, SubscriberStatus
from digest.pipeline.bounces import return_paths
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer

BOUNCES = (Path(__file__).parent / "data" / "bounces" / "postfix-511-verp.eml").read_text()


def site(tmp_path: Path, smtp_server: SmtpServer, *, verp: bool) -> Path:
    people = [ws.Row(f"r{i:03d}@example.org", "", "") for i in range(4)]
    extra = (
        f'\n[bounces]\naddress = "bounces@example.org"\nverp = {str(verp).lower()}\nmaildir = "box"\nthreshold = 1\n'
    )
    path = ws.make_folder(tmp_path, people, port=smtp_server.port, extra=extra)
    for sub in ("new", "cur", "tmp"):
        (tmp_path / "box" / sub).mkdir(parents=True)
    return path


def test_each_message_has_its_own_return_path_and_its_bounce_is_found(tmp_path: Path, smtp_server: SmtpServer) -> None:
    config = ws.load(site(tmp_path, smtp_server, verp=True))
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=clock)
        froms = {m.rcpt_tos[0]: m.mail_from for m in smtp_server.messages}
        assert len(froms) == 4 and len(set(froms.values())) == 4
        for rcpt, mail_from in froms.items():
            tag = tag_of(mail_from, "bounces@example.org")
            assert tag is not None and store.verp_lookup(tag) == ("2018-W02", rcpt)
        # A resend of the same message keeps its tag (the tag is a function of issue and address).
        again = return_paths(config, store, "2018-W02", ["r000@example.org"])
        assert again is not None and again("r000@example.org") == froms["r000@example.org"]
    # The bounce arrives at r000's VERP address; digest run scans the mailbox before sending.
    bounce = BOUNCES.replace("{{TAG:r000@example.org}}", tag_of(froms["r000@example.org"], "bounces@example.org") or "")
    bounce = re.sub(r"\{\{MID:[^}]+\}\}", "<unrelated@example.net>", bounce)
    (tmp_path / "box" / "new" / "1.bounce").write_text(bounce)
    run = ws.run_cli(tmp_path / "digest.toml", "run")
    assert "bounce mailbox: 1 messages read: hard 1" in run.stdout, run.stdout + run.stderr
    with pipeline.open_store(config) as store:
        assert store.subscriber_status()["r000@example.org"] is SubscriberStatus.BOUNCED  # threshold = 1


def test_without_verp_the_bounce_address_is_the_return_path(tmp_path: Path, smtp_server: SmtpServer) -> None:
    config = ws.load(site(tmp_path, smtp_server, verp=False))
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=clock)
    assert {m.mail_from for m in smtp_server.messages} == {"bounces@example.org"}
