"""Double opt-in and preferences over real HTTP, with the real SMTP sink receiving the mails.

The backend's clock is injected (``Clock``), so expiry, the purge and the
rate limits are checked without waiting.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from digest import pipeline
from digest.backend import LocalBackend
from digest.config import DEFAULT_CONSENT
from digest.models import IsoWeek, Subscriber, SubscriberStatus
from digest.render import variant_key
from digest.web import create_app
from digest.web.archive import ArchiveOptions
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer
from tests.fixtures.web_server import running

CONSENT = "I agree  to get Cyber Weekly by email; my address is kept only for it. (v2)"
NEW = "new.reader@example.net"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", ws.SECRET)


class Clock:
    """The backend's clock; tests move it."""

    def __init__(self, at: dt.datetime = ws.RUN_NOW) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += dt.timedelta(**delta)


@dataclass
class Site:
    path: Path
    base: str
    clock: Clock
    smtp: SmtpServer

    def post(self, url: str, data: dict[str, str | list[str]] | None = None, **kw: object) -> httpx.Response:
        return httpx.post(self.base + url, data=data or {}, **kw)  # type: ignore[arg-type]

    def get(self, url: str) -> httpx.Response:
        return httpx.get(self.base + url)

    def subscribe(self, email: str = NEW, name: str = "New Reader", themes: list[str] | None = None) -> httpx.Response:
        data: dict[str, str | list[str]] = {"email": email, "name": name, "consent": "yes"}
        if themes:
            data["themes"] = themes
        return self.post("/subscribe", data)

    def mails(self, to: str) -> list[EmailMessage]:
        return [ws.parse(m.data) for m in self.smtp.received(to)]

    def local(self, url: str) -> str:
        """A link from a mail (made for ``base_url``) as a path on the test server."""
        return "/" + url.split("/", 3)[3]


def link(text: str, kind: str) -> str:
    found = re.search(rf"https?://\S+/{kind}/[A-Za-z0-9_-]+", text)
    assert found, f"no /{kind}/ link in {text!r}"
    return found.group(0)


def make_site(tmp_path: Path, smtp: SmtpServer, *, extra: str = "", rows: int = 4) -> tuple[Path, Clock]:
    toml = f'\n[subscribe]\nenabled = true\nconsent_text = "{CONSENT}"\n' + extra
    path = ws.make_folder(tmp_path, ws.rows(rows), port=smtp.port, extra=toml)
    return path, Clock()


@contextlib.contextmanager
def serving(path: Path, clock: Clock, smtp: SmtpServer, archive: bool = False) -> Iterator[Site]:
    app = create_app(
        LocalBackend(path, strict_tokens=True, now=clock),
        title="Cyber Weekly",
        enable_preview=False,
        base_url="http://127.0.0.1:8025",
        archive=ArchiveOptions(base_url="http://127.0.0.1:8025") if archive else None,
    )
    with running(app) as base:
        yield Site(path, base, clock, smtp)


@pytest.fixture
def site(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Site]:
    path, clock = make_site(tmp_path, smtp_server)
    with serving(path, clock, smtp_server) as s:
        yield s


def listed(path: Path) -> dict[str, dict[str, object]]:
    import json

    out = ws.run_cli(path, "subscribers", "list", "--json")
    assert out.returncode == 0, out.stderr
    return {row["email"]: row for row in map(json.loads, out.stdout.splitlines())}


# -- opt-in end to end ----------------------------------------------------------------------------


def test_opt_in_end_to_end_then_the_next_issue_comes(site: Site) -> None:
    form = site.get("/subscribe")
    assert form.status_code == 200 and form.headers["cache-control"] == "no-store"
    html = form.text
    for field in ('name="email"', 'name="name"', 'name="themes" value="Cybersecurity"', 'name="consent"'):
        assert field in html
    assert 'type="checkbox" name="consent" value="yes" required>' in html  # unticked
    assert "I agree  to get Cyber Weekly by email; my address is kept only for it. (v2)" in html
    assert 'name="website"' in html and "<script" not in html and "csrf" not in html.lower()

    answer = site.subscribe(themes=["Cybersecurity", "Digital economy"])
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    # The mail went out before the answer came back.
    (mail,) = site.mails(NEW)
    assert mail["List-Unsubscribe"] is None and mail["List-Id"] is None and mail["Precedence"] is None
    assert mail["Auto-Submitted"] == "auto-generated" and "Confirm" in str(mail["Subject"])
    body = ws.text_body(mail)
    assert CONSENT in body  # the exact text, double space included
    confirm = site.local(link(body, "confirm"))
    token = confirm.rsplit("/", 1)[1]
    assert len(token) == 22  # 16 random bytes, base64url
    assert listed(site.path)[NEW]["status"] == "pending"

    # GET changes nothing: it shows the two buttons.
    page = site.get(confirm)
    assert page.status_code == 200
    assert 'value="confirm">Confirm</button>' in page.text and 'value="decline">No thanks</button>' in page.text
    assert site.get(confirm).status_code == 200
    assert listed(site.path)[NEW]["status"] == "pending"

    done = site.post(confirm, {"action": "confirm"})
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert listed(site.path)[NEW] == {
        "email": NEW,
        "name": "New Reader",
        "themes": ["Cybersecurity", "Digital economy"],
        "timezone": None,
        "status": "active",
        "source": "web",
    }
    # The link is used up.
    assert site.post(confirm, {"action": "confirm"}).status_code == 400
    welcome = site.mails(NEW)[1]
    assert "Welcome" in str(welcome["Subject"]) and welcome["List-Id"] is None
    welcome_text = ws.text_body(welcome)
    prefs = site.local(link(welcome_text, "p"))
    assert site.get(prefs).status_code == 200
    assert "/archive/" not in welcome_text  # the archive is off here

    # Consent records: subscribe and confirm, with the consent text's hash; no IP unless record_ip.
    config = ws.load(site.path)
    with pipeline.open_store(config) as store:
        records = store.consents(NEW)
        assert store.web_subscriber(NEW) is not None
        sha = hashlib.sha256(CONSENT.encode()).hexdigest()
        assert [(c.kind, c.text_sha256, c.ip) for c in records] == [("subscribe", sha, None), ("confirm", sha, None)]
        # The web subscriber is in the next issue's audience, with their themes.
        pipeline.fetch_all(config, store, ws.RUN_NOW)
        issue = pipeline.make_issue(config, store, (IsoWeek(2018, 2),))
        aud = dict((s.email, v) for s, v in pipeline.audience(config, store, issue).assignments)
    assert aud[NEW] == variant_key(frozenset({"Cybersecurity", "Digital economy"}), issue.themes)


def test_welcome_links_the_latest_archived_issue(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path, clock = make_site(tmp_path, smtp_server, extra='\n[web]\narchive = "public"\n', rows=2)
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, ws.RUN_NOW)
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=ws.fixed_clock())
    with serving(path, clock, smtp_server, archive=True) as s:
        s.subscribe()
        s.post(s.local(link(ws.text_body(s.mails(NEW)[0]), "confirm")), {"action": "confirm"})
        text = ws.text_body(s.mails(NEW)[1])
        assert "http://127.0.0.1:8025/archive/2018-W02/" in text
        page = s.get("/archive/2018-W02/")
        assert page.status_code == 200 and "Change your themes" in page.text
        assert "/p/" not in page.text and "/u/" not in page.text  # the public copy links nobody's preferences


def test_no_thanks_erases_the_sign_up(site: Site) -> None:
    site.subscribe()
    confirm = site.local(link(ws.text_body(site.mails(NEW)[0]), "confirm"))
    assert "Nothing was subscribed" in site.post(confirm, {"action": "decline"}).text
    assert NEW not in listed(site.path)
    assert site.get(confirm).status_code == 400


def test_confirmation_expires_and_unconfirmed_sign_ups_are_purged(site: Site) -> None:
    site.subscribe()
    confirm = site.local(link(ws.text_body(site.mails(NEW)[0]), "confirm"))
    site.clock.advance(hours=47, minutes=59)
    assert site.get(confirm).status_code == 200
    site.clock.advance(minutes=2)  # past confirm_ttl = 48h
    assert site.get(confirm).status_code == 400
    assert site.post(confirm, {"action": "confirm"}).status_code == 400
    assert listed(site.path)[NEW]["status"] == "pending"
    # purge_unconfirmed_after = 7d: the next request erases it.
    site.clock.advance(days=6)
    site.subscribe(email="someone.else@example.net")
    assert NEW not in listed(site.path)
    with pipeline.open_store(ws.load(site.path)) as store:
        assert store.web_subscriber(NEW) is None
        assert [c.kind for c in store.consents(NEW)] == []


def test_the_same_answer_for_new_pending_and_subscribed_addresses(site: Site) -> None:
    list_member = "r000@example.org"
    new = site.subscribe(email=NEW)
    site.clock.advance(minutes=11)
    pending = site.subscribe(email=NEW)
    on_list = site.subscribe(email=list_member)
    # A confirmed web subscriber too.
    site.subscribe(email="web.member@example.net")
    site.post(site.local(link(ws.text_body(site.mails("web.member@example.net")[0]), "confirm")), {"action": "confirm"})
    site.clock.advance(minutes=11)
    confirmed = site.subscribe(email="web.member@example.net")
    bodies = {r.text for r in (new, pending, on_list, confirmed)}
    assert len(bodies) == 1 and all(r.status_code == 200 for r in (new, pending, on_list, confirmed))
    assert {k.lower(): v for k, v in new.headers.items() if k.lower() != "date"} == {
        k.lower(): v for k, v in confirmed.headers.items() if k.lower() != "date"
    }
    assert len(site.mails(NEW)) == 2  # new, then pending again
    assert site.mails(list_member) == []  # subscribed: nobody is pestered
    assert len(site.mails("web.member@example.net")) == 2  # confirmation and welcome only


def test_rate_limits_one_per_ten_minutes_and_three_a_day(site: Site) -> None:
    def sent() -> int:
        return len(site.mails(NEW))

    assert site.subscribe().status_code == 200 and sent() == 1
    assert site.subscribe().status_code == 200 and sent() == 1  # within 10 minutes
    site.clock.advance(minutes=9, seconds=59)
    site.subscribe()
    assert sent() == 1
    site.clock.advance(seconds=2)
    site.subscribe()
    assert sent() == 2
    site.clock.advance(minutes=10, seconds=1)
    site.subscribe()
    assert sent() == 3
    site.clock.advance(minutes=30)
    site.subscribe()
    assert sent() == 3  # three in a day
    site.clock.advance(hours=23, minutes=30)
    site.subscribe()
    assert sent() == 4
    # Every link sent is still good (none replaced the others) until the first is used.
    links = [site.local(link(ws.text_body(m), "confirm")) for m in site.mails(NEW)]
    assert len(set(links)) == 4 and site.get(links[-1]).status_code == 200


# -- preferences ----------------------------------------------------------------------------------


def test_preferences_save_and_the_next_issue_uses_them(site: Site) -> None:
    config = ws.load(site.path)
    reader = Subscriber("r000@example.org", "O'Brien")  # on the list, with every theme
    list_file = site.path.parent / "subscribers" / "subscribers.csv"
    before = list_file.read_bytes()
    prefs_url = pipeline.recipient(config, reader).preferences_url
    assert prefs_url.startswith("http://127.0.0.1:8025/p/")
    prefs = site.local(prefs_url)
    page = site.get(prefs)
    assert page.status_code == 200 and 'name="themes" value="Cybersecurity">' in page.text  # none ticked: all
    assert "r***@example.org" in page.text and "r000@example.org" not in page.text
    r = site.post(prefs, {"action": "save", "themes": ["Cybersecurity"]})
    assert r.status_code == 200 and "Your themes are saved" in r.text
    assert 'value="Cybersecurity" checked>' in r.text and 'value="Digital economy">' in r.text
    assert site.post(prefs, {"action": "save", "themes": ["Cybersecurity", "Nope"]}).status_code == 400
    assert list_file.read_bytes() == before  # no list file changes
    with pipeline.open_store(config) as store:
        assert [c.kind for c in store.consents(reader.email)] == ["preferences"]
        assert store.consents(reader.email)[0].detail == '{"themes": ["Cybersecurity"]}'
        pipeline.fetch_all(config, store, ws.RUN_NOW)
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=ws.fixed_clock())
        issue = pipeline.make_issue(config, store, (IsoWeek(2018, 2),))
        rows = {d.email: d.variant for d in store.deliveries("2018-W02")}
    assert rows[reader.email] == variant_key(frozenset({"Cybersecurity"}), issue.themes)
    # Every message's footer links "Change your themes" to the reader's own /p/ link.
    (sent,) = site.mails(reader.email)
    html = sent.get_body(("html",))
    assert html is not None
    assert f'href="{prefs_url}"' in html.get_content() and "Change your themes" in html.get_content()
    assert f"Change your themes: {prefs_url}" in ws.text_body(sent)

    # The same page unsubscribes; the next issue leaves them out.
    gone = site.post(prefs, {"action": "unsubscribe"})
    assert gone.status_code == 200 and "You are unsubscribed" in gone.text
    assert "You are unsubscribed" in site.get(prefs).text
    with pipeline.open_store(config) as store:
        assert store.subscriber_status([reader.email])[reader.email] is SubscriberStatus.UNSUBSCRIBED
        assert [c.kind for c in store.consents(reader.email)] == ["preferences", "unsubscribe"]
        aud = pipeline.audience(config, store, issue)
    assert reader.email not in {s.email for s, _ in aud.assignments}


def test_a_list_row_wins_and_an_unsubscribe_always_wins(site: Site) -> None:
    config = ws.load(site.path)
    # A web subscriber who then unsubscribes with the link of an issue.
    site.subscribe(themes=["Cybersecurity"])
    site.post(site.local(link(ws.text_body(site.mails(NEW)[0]), "confirm")), {"action": "confirm"})
    unsub = site.local(link(ws.text_body(site.mails(NEW)[1]), "u"))
    assert site.post(unsub, {"List-Unsubscribe": "One-Click"}).status_code == 200
    # A list row for an address that also signed up on the web: the row's name wins.
    with pipeline.open_store(config) as store:
        from digest.store import token_hash

        pipeline.fetch_all(config, store, ws.RUN_NOW)
        store.start_confirmation("R001@example.org", "Web Name", (), token_hash("t" * 22), ws.RUN_NOW, dt.timedelta(1))
        store.confirm(token_hash("t" * 22), ws.RUN_NOW)
        issue = pipeline.make_issue(config, store, (IsoWeek(2018, 2),))
        people = {s.email.lower(): s for s, _ in pipeline.audience(config, store, issue).assignments}
        consents = [c.kind for c in store.consents(NEW)]
    assert NEW not in people
    assert people["r001@example.org"].name == ws.rows(4)[1].name
    assert list(people).count("r001@example.org") == 1
    assert consents == ["subscribe", "confirm", "unsubscribe"]
    # Signing up again after leaving is a new, explicit consent once confirmed.
    site.clock.advance(minutes=11)
    site.subscribe()
    assert listed(site.path)[NEW]["status"] == "unsubscribed"
    site.post(site.local(link(ws.text_body(site.mails(NEW)[2]), "confirm")), {"action": "confirm"})
    assert listed(site.path)[NEW]["status"] == "active"


def test_subscribe_routes_are_absent_unless_enabled(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = ws.make_folder(tmp_path, ws.rows(2), port=smtp_server.port)
    assert ws.load(path).subscribe.enabled is False
    with serving(path, Clock(), smtp_server) as s:
        assert s.get("/subscribe").status_code == 404
        assert s.post("/subscribe", {"email": NEW, "consent": "yes"}).status_code in (404, 405)
        assert s.get("/confirm/" + "A" * 22).status_code == 404
        # Preferences links of sent issues keep working.
        config = ws.load(path)
        prefs = pipeline.recipient(config, Subscriber("r000@example.org")).preferences_url
        assert s.get(s.local(prefs)).status_code == 200
    assert DEFAULT_CONSENT in ws.load(path).subscribe.consent_text


def test_a_relay_that_refuses_the_confirmation_gets_a_try_again_page(site: Site) -> None:
    site.smtp.inject("RCPT", 550, times=None)
    r = site.subscribe()
    assert r.status_code == 503 and "try again" in r.text.lower()
    site.smtp.clear_faults()
    # The failed try did not count against the limit.
    assert site.subscribe().status_code == 200 and len(site.mails(NEW)) == 1


def test_record_ip_keeps_the_client_address_in_consent_records(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path, clock = make_site(tmp_path, smtp_server, extra="record_ip = true\n", rows=1)
    assert ws.load(path).subscribe.record_ip
    with serving(path, clock, smtp_server) as s:
        s.subscribe()
        s.post(s.local(link(ws.text_body(s.mails(NEW)[0]), "confirm")), {"action": "confirm"})
        prefs = s.local(link(ws.text_body(s.mails(NEW)[1]), "p"))
        s.post(prefs, {"action": "save"})
        s.post(prefs, {"action": "unsubscribe"})
    with pipeline.open_store(ws.load(path)) as store:
        records = [(c.kind, c.ip) for c in store.consents(NEW)]
    assert records == [
        ("subscribe", "127.0.0.1"),
        ("confirm", "127.0.0.1"),
        ("preferences", "127.0.0.1"),
        ("unsubscribe", None),
    ]


def test_digest_serve_offers_the_sign_up_and_preview_does_not(tmp_path: Path, smtp_server: SmtpServer) -> None:
    from tests.test_cli_serving import interrupt, start

    path, _ = make_site(tmp_path, smtp_server, rows=1)
    proc, base = start(path, "serve")
    try:
        assert "Subscribe to Cyber Weekly" in httpx.get(base + "/subscribe", trust_env=False).text
        r = httpx.post(base + "/subscribe", data={"email": NEW, "consent": "yes"}, trust_env=False)
        assert r.status_code == 200 and "Check your inbox" in r.text
    finally:
        assert interrupt(proc)[0] == 0
    assert len(smtp_server.received(NEW)) == 1
    proc, base = start(path, "preview")
    try:
        assert httpx.get(base + "/subscribe", trust_env=False).status_code == 404
    finally:
        assert interrupt(proc)[0] == 0


def test_without_selectable_themes_the_form_has_no_boxes_and_everyone_gets_all(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    path, clock = make_site(tmp_path, smtp_server, extra="themes_selectable = false\n", rows=1)
    with serving(path, clock, smtp_server) as s:
        assert 'name="themes"' not in s.get("/subscribe").text
        assert s.subscribe(themes=["Cybersecurity"]).status_code == 200
        s.post(s.local(link(ws.text_body(s.mails(NEW)[0]), "confirm")), {"action": "confirm"})
    assert listed(path)[NEW]["themes"] == []
