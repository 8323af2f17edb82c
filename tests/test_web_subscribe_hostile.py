"""Hostile input to the sign-up and preferences routes: bodies, addresses, names, themes, tokens, forms."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from digest import pipeline, tokens
from digest.web.forms import MAX_BODY
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer
from tests.test_web_subscribe import NEW, Site, listed, make_site, serving


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", ws.SECRET)


@pytest.fixture
def site(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Site]:
    path, clock = make_site(tmp_path, smtp_server)
    with serving(path, clock, smtp_server) as s:
        yield s


def test_the_honeypot_gets_the_same_page_and_nothing_happens(site: Site) -> None:
    normal = site.subscribe(email="someone@example.net")
    trap = site.post("/subscribe", {"email": NEW, "name": "Bot", "consent": "yes", "website": "http://spam.example"})
    assert trap.status_code == 200 and trap.text == normal.text
    assert site.mails(NEW) == []
    assert NEW not in listed(site.path)


def test_hostile_form_input(site: Site) -> None:
    huge = site.post("/subscribe", {"email": NEW, "consent": "yes", "name": "x" * (MAX_BODY + 10)})
    assert huge.status_code == 413
    for bad in ("bob@", "a@b@example.org", "no-at-sign", "x" * 65 + "@example.org", "a@-bad-.example", "é@é"):
        r = site.post("/subscribe", {"email": bad, "consent": "yes"})
        assert r.status_code == 400 and "invalid address" in r.text, bad
    injected = site.post("/subscribe", {"email": f"{NEW}\r\nBcc: victim@example.org", "consent": "yes"})
    assert injected.status_code == 400
    assert site.post("/subscribe", {"email": NEW}).status_code == 400  # no consent
    assert site.post("/subscribe", {"email": NEW, "consent": "on"}).status_code == 400
    r = site.post("/subscribe", {"email": NEW, "consent": "yes", "themes": ["Cybersecurity", "<script>x</script>"]})
    assert r.status_code == 400 and "unknown theme" in r.text and "<script>x" not in r.text
    assert site.post("/subscribe", {"email": NEW, "consent": "yes", "name": "n" * 201}).status_code == 400
    # Another site's form cannot post here.
    foreign = site.post("/subscribe", {"email": NEW, "consent": "yes"}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert site.mails(NEW) == [] and site.smtp.messages == []

    # A name that tries to add a header: it is cleaned into the display name.
    ok = site.subscribe(name="Eve\r\nBcc: victim@example.org\r\n\r\nbody")
    assert ok.status_code == 200
    (msg,) = site.smtp.received(NEW)
    assert msg.rcpt_tos == (NEW,) and site.smtp.received("victim@example.org") == []
    head = msg.data.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"^Bcc:", head, re.MULTILINE)
    assert "Eve Bcc: victim@example.org body" in str(ws.parse(msg.data)["To"])
    # Multipart bodies are read too.
    multi = httpx.post(site.base + "/subscribe", files={"email": (None, "multi@example.net"), "consent": (None, "yes")})
    assert multi.status_code == 200 and len(site.mails("multi@example.net")) == 1


def test_forged_expired_and_garbage_tokens(site: Site) -> None:
    for token in ("A" * 22, "short", "../../etc/passwd", "x" * 2000, "%00" * 8, "AAAAAAAAAAAAAAAAAAAAA!"):
        # (httpx folds "/p/../../etc/passwd" to "/etc/passwd": no such route, 404.)
        expected = 404 if "/etc/passwd" in token else 400
        assert site.get(f"/confirm/{token}").status_code == expected, token
        assert site.post(f"/confirm/{token}", {"action": "confirm"}).status_code == expected, token
        assert site.get(f"/p/{token}").status_code in (400, 404), token
        assert site.post(f"/p/{token}", {"action": "save"}).status_code in (400, 404), token
        assert "/etc/passwd" in token or site.get(f"/p/{token}").status_code == 400
    config = ws.load(site.path)
    list_id = config.digest.list_id or pipeline.default_list_id(config)
    reader = "r001@example.org"
    unsub = tokens.make_token(ws.SECRET, reader, list_id)
    prefs = tokens.make_token(ws.SECRET, reader, list_id, tokens.PREFERENCES)
    assert unsub != prefs
    assert site.get(f"/p/{unsub}").status_code == 400  # the unsubscribe token does not open preferences
    assert site.get(f"/u/{prefs}").status_code == 400  # nor the other way round
    forged = tokens.make_token("another secret", reader, list_id, tokens.PREFERENCES)
    assert site.get(f"/p/{forged}").status_code == 400
    flipped = prefs[:-2] + ("A" if prefs[-2] != "A" else "B") + prefs[-1]
    assert site.get(f"/p/{flipped}").status_code == 400
    assert site.get(f"/p/{prefs}").status_code == 200
    big = site.post(f"/p/{prefs}", {"themes": ["x" * (MAX_BODY + 1)]})
    assert big.status_code == 413


def test_form_values_keep_repeated_fields_and_survive_garbage() -> None:
    from digest.web.forms import form_fields, form_values

    form = "application/x-www-form-urlencoded"
    assert form_values(form, b"themes=A&themes=B%20C&email=x") == {"themes": ["A", "B C"], "email": ["x"]}
    assert form_fields(form, b"themes=A&themes=B") == {"themes": "A"}
    assert form_values(form, b"\xff\xfe=%ZZ&&=") == {"\ufffd\ufffd": ["%ZZ"], "": [""]}
    assert form_values("text/plain", b"email=x") == {}
    assert form_values("multipart/form-data; boundary=zz", b"--zz\r\nnot a part") == {}
    body = (
        b"--zz\r\nContent-Disposition: form-data; name=themes\r\n\r\nA\r\n"
        b"--zz\r\nContent-Disposition: form-data; name=themes\r\n\r\nB\r\n--zz--\r\n"
    )
    assert form_values("multipart/form-data; boundary=zz", body) == {"themes": ["A", "B"]}
