"""The bounce mailbox: each fixture scanned to its outcome, hostile mail beside good, scores, VERP."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest

from digest import pipeline
from digest.bounces import (
    BounceSettings,
    Failure,
    ImapBox,
    ImapSettings,
    Kind,
    MaildirBox,
    ScanSettings,
    Verdict,
    classify,
    read_report,
    scan,
    score,
    tag_of,
    verp_address,
    verp_tag,
)
from digest.compose.headers import message_id
from digest.errors import BounceError
from digest.models import IsoWeek, SubscriberStatus
from digest.store import Store
from tests.data.send import workspace as ws
from tests.fixtures.imap_server import ImapServer
from tests.fixtures.smtp_server import SmtpServer

DATA = Path(__file__).parent / "data" / "bounces"
ISSUE = "2018-W02"
SECRET = "bounce-test-secret"
NOW = dt.datetime(2018, 1, 16, 12, 0, tzinfo=dt.UTC)


def mid(email: str) -> str:
    return message_id(ISSUE, email, "example.org")


def fill(text: str) -> str:
    text = re.sub(r"\{\{MID:([^}]+)\}\}", lambda m: mid(m.group(1)), text)
    return re.sub(r"\{\{TAG:([^}]+)\}\}", lambda m: verp_tag(SECRET, ISSUE, m.group(1)), text)


def fixture(name: str) -> bytes:
    return fill((DATA / name).read_text()).encode()


# -- reading one message ---------------------------------------------------------


def test_a_postfix_dsn_names_recipient_status_and_original() -> None:
    rep = read_report(fixture("postfix-511-verp.eml"))
    assert rep.kind is Kind.DSN
    assert [(f.recipient, f.action, f.status) for f in rep.failures] == [("r000@example.org", "failed", "5.1.1")]
    assert "User unknown" in rep.failures[0].diagnostic
    assert rep.original_ids == (mid("r000@example.org"),)
    assert rep.envelope_to[0].startswith("bounces+")


def test_exim_exchange_gmail_and_arf_are_read() -> None:
    exim = read_report(fixture("exim-failed.eml"))
    assert [(f.recipient, f.status) for f in exim.failures] == [("r002@example.org", "5.1.1")]
    exchange = read_report(fixture("exchange-msgid-only.eml"))
    assert exchange.kind is Kind.DSN and exchange.failures[0].recipient == ""
    assert exchange.failures[0].status == "5.1.10" and exchange.original_ids == (mid("r003@example.org"),)
    delay = read_report(fixture("gmail-delay.eml"))
    assert [(f.action, f.status) for f in delay.failures] == [("delayed", "4.4.7")]
    arf = read_report(fixture("yahoo-arf-abuse.eml"))
    assert (arf.kind, arf.feedback_type) == (Kind.FEEDBACK, "abuse")
    assert arf.feedback_recipients == ("r006@example.org",)
    ooo = read_report(fixture("out-of-office.eml"))
    assert ooo.kind is Kind.AUTOREPLY


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff" * 1000,
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n"
        b"Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: \r\n\r\n--x",
        b"Content-Type: multipart/report; boundary=\r\n\r\n" + b"--\r\n" * 10000,
        b"From: a@b\r\nX-Failed-Recipients: ,,,\r\n\r\nbody",
        b"Content-Type: message/rfc822\r\n\r\n" * 200,
    ],
)
def test_hostile_mail_is_read_without_raising(data: bytes) -> None:
    rep = read_report(data)
    assert all(f.recipient == "" or "@" in f.recipient for f in rep.failures)


# -- classification and scores ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "action", "diagnostic", "verdict"),
    [
        ("5.1.1", "failed", "", Verdict.HARD),
        ("5.1.10", "failed", "", Verdict.HARD),
        ("5.2.1", "failed", "", Verdict.HARD),
        ("5.2.2", "failed", "mailbox full", Verdict.SOFT),
        ("4.4.7", "delayed", "", Verdict.SOFT),
        ("5.1.1", "delayed", "", Verdict.SOFT),
        ("5.7.1", "failed", "spam", Verdict.POLICY),
        ("5.7.26", "failed", "DMARC", Verdict.POLICY),
        ("", "failed", "550 User unknown", Verdict.HARD),
        ("5.0.0", "failed", "550 something odd", Verdict.SOFT),
        ("2.0.0", "delivered", "", Verdict.IGNORED),
    ],
)
def test_classify_by_rfc3463_status(status: str, action: str, diagnostic: str, verdict: Verdict) -> None:
    assert classify(Failure("a@example.org", action, status, diagnostic)) is verdict


def test_score_counts_one_event_a_day_and_resets_after_quiet() -> None:
    s = BounceSettings(threshold=3, stale_after=dt.timedelta(days=14))
    day = dt.datetime(2018, 1, 1, 9, tzinfo=dt.UTC)
    same_day = [(day, Verdict.SOFT), (day + dt.timedelta(hours=2), Verdict.HARD), (day, Verdict.HARD)]
    assert score(same_day, s) == 1.0
    three = [(day + dt.timedelta(days=i), Verdict.HARD) for i in range(3)]
    assert score(three, s) == 3.0
    gap = [(day, Verdict.HARD), (day + dt.timedelta(days=1), Verdict.HARD), (day + dt.timedelta(days=30), Verdict.SOFT)]
    assert score(gap, s) == 0.5
    assert score([(day, Verdict.POLICY)] * 10, s) == 0.0


def test_verp_tags_round_trip_and_refuse_look_alikes() -> None:
    tag = verp_tag(SECRET, ISSUE, "Ann@Example.org")
    assert tag == verp_tag(SECRET, ISSUE, "ann@example.org") and re.fullmatch(r"[0-9a-f]{20}", tag)
    assert tag != verp_tag("other", ISSUE, "ann@example.org")
    address = verp_address("bounces@example.org", tag)
    assert address == f"bounces+{tag}@example.org"
    assert tag_of(address.upper(), "bounces@example.org") == tag
    for hostile in (f"bounces+{tag}@evil.example", f"bouncesx+{tag}@example.org", "bounces+zz@example.org", "x"):
        assert tag_of(hostile, "bounces@example.org") is None


# -- the whole scan --------------------------------------------------------------------------


@pytest.fixture
def sent(tmp_path: Path, smtp_server: SmtpServer) -> Store:
    """Issue 2018-W02 really sent to r000..r009 over the loopback SMTP server."""
    people = [ws.Row(f"r{i:03d}@example.org", "", "") for i in range(10)]
    config = ws.load(ws.make_folder(tmp_path / "site", people, port=smtp_server.port))
    clock = ws.fixed_clock()
    store = Store.open(config.digest.database)
    pipeline.fetch_all(config, store, clock())
    pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=clock)
    store.record_verp_tags(ISSUE, [(p.email, verp_tag(SECRET, ISSUE, p.email)) for p in people])
    return store


def maildir(root: Path, names: list[str]) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        (root / "new" / f"{1516097100 + n}.{name}").write_bytes(fixture(name))
    return root


SETTINGS = ScanSettings(bounce_address="bounces@example.org", unsubscribe_address="unsubscribe@example.org")


def run_scan(store: Store, box: Path, *, dry_run: bool = False, settings: ScanSettings = SETTINGS) -> object:
    return scan(MaildirBox(box), store, settings, lambda k, e: message_id(k, e, "example.org"), NOW, dry_run=dry_run)


def test_every_fixture_is_scanned_to_its_outcome(sent: Store, tmp_path: Path) -> None:
    box = maildir(tmp_path / "bounces", sorted(p.name for p in DATA.glob("*.eml")))
    result = run_scan(sent, box)
    assert result.read == 10  # type: ignore[attr-defined]
    verdicts = {(e.email, e.verdict) for e in sent.bounce_events()}
    assert verdicts == {
        ("r000@example.org", "hard"),  # Postfix 5.1.1, found by its VERP tag
        ("r002@example.org", "hard"),  # Exim X-Failed-Recipients
        ("r003@example.org", "hard"),  # Exchange: only the quoted Message-ID names the address
        ("r004@example.org", "soft"),  # Gmail 4.4.7 delay
        ("r005@example.org", "policy"),  # 5.7.1 spam block: reported, never scored
        ("r006@example.org", "complaint"),  # ARF abuse
        ("r008@example.org", "unsubscribe"),  # mail to the unsubscribe address
    }
    status = sent.subscriber_status()
    assert status["r006@example.org"] is SubscriberStatus.COMPLAINED
    assert status["r008@example.org"] is SubscriberStatus.UNSUBSCRIBED
    assert "r000@example.org" not in status  # one hard bounce is not yet three
    assert "r007@example.org" not in status  # not-spam feedback changes nothing
    assert "r001@example.org" not in status  # an out-of-office reply is not a bounce
    assert "victim@example.net" not in status  # forged: nobody we sent to
    counts = result.counts  # type: ignore[attr-defined]
    assert counts["forged"] == 1 and counts["autoreply"] == 1 and counts["feedback-other"] == 1
    # Nothing deleted: every message moved from new/ to cur/.
    assert not list((box / "new").iterdir()) and len(list((box / "cur").iterdir())) == 10


def test_a_second_scan_records_nothing_new(sent: Store, tmp_path: Path) -> None:
    box = maildir(tmp_path / "bounces", ["postfix-511-verp.eml", "yahoo-arf-abuse.eml"])
    run_scan(sent, box)
    before = sent.bounce_events()
    assert run_scan(sent, box).read == 0  # type: ignore[attr-defined]
    # The same messages delivered again (a re-run of the MTA) are still recorded once.
    for f in (box / "cur").iterdir():
        shutil.copy(f, box / "new" / f.name.partition(":")[0])
    again = run_scan(sent, box)
    assert again.read == 2  # type: ignore[attr-defined]
    assert sent.bounce_events() == before


def test_a_dry_run_moves_and_records_nothing(sent: Store, tmp_path: Path) -> None:
    box = maildir(tmp_path / "bounces", ["exim-failed.eml", "mailto-unsubscribe.eml"])
    result = run_scan(sent, box, dry_run=True)
    assert result.counts["hard"] == 1 and result.counts["unsubscribe"] == 1  # type: ignore[attr-defined]
    assert sent.bounce_events() == [] and sent.subscriber_status() == {}
    assert len(list((box / "new").iterdir())) == 2


def test_three_hard_bounces_on_three_days_mark_bounced(sent: Store, tmp_path: Path) -> None:
    box = maildir(tmp_path / "bounces", [])
    for day in range(3):
        (box / "new" / f"m{day}").write_bytes(fixture("exim-failed.eml").replace(b"10:06:11", f"1{day}:00:00".encode()))
        scan(
            MaildirBox(box), sent, SETTINGS, lambda k, e: message_id(k, e, "example.org"), NOW + dt.timedelta(days=day)
        )
    assert sent.subscriber_status()["r002@example.org"] is SubscriberStatus.BOUNCED
    assert sent.reset_bounces("r002@example.org") == 3


def test_an_unreadable_message_is_counted_and_the_scan_goes_on(sent: Store, tmp_path: Path) -> None:
    box = maildir(tmp_path / "bounces", ["exim-failed.eml"])
    (box / "new" / "0.garbage").write_bytes(b"\xff\xfe\x00" * 5000)
    result = run_scan(sent, box)
    assert result.read == 2  # type: ignore[attr-defined]
    assert [e.email for e in sent.bounce_events()] == ["r002@example.org"]


def test_a_folder_that_is_not_a_maildir_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(BounceError, match="is not a Maildir"):
        MaildirBox(tmp_path)


def test_the_imap_path_against_a_real_server(sent: Store, imap_server: ImapServer) -> None:
    for name in ("postfix-511-verp.eml", "yahoo-arf-abuse.eml", "out-of-office.eml"):
        imap_server.deliver(fixture(name))
    settings = ImapSettings(
        host="127.0.0.1", user=imap_server.user, password=imap_server.password, port=imap_server.port, security="none"
    )
    box = ImapBox(settings)
    try:
        result = scan(box, sent, SETTINGS, lambda k, e: message_id(k, e, "example.org"), NOW)
    finally:
        box.close()
    assert result.read == 3
    assert {(e.email, e.verdict) for e in sent.bounce_events()} == {
        ("r000@example.org", "hard"),
        ("r006@example.org", "complaint"),
    }
    # Never deleted: moved to the processed folder; a second scan finds nothing.
    assert imap_server.count("INBOX") == 0 and imap_server.count("digest-processed") == 3
    again = ImapBox(settings)
    try:
        assert scan(again, sent, SETTINGS, lambda k, e: message_id(k, e, "example.org"), NOW).read == 0
    finally:
        again.close()


def test_a_wrong_imap_password_is_one_error(imap_server: ImapServer) -> None:
    settings = ImapSettings(host="127.0.0.1", user="bounce", password="wrong", port=imap_server.port, security="none")
    with pytest.raises(BounceError, match=f"bounces.imap_host: 127.0.0.1:{imap_server.port}"):
        ImapBox(settings)
