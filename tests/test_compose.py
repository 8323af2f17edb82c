"""compose: the reference message, the spliced template, and DKIM."""

from __future__ import annotations

import base64
import datetime as dt
import email
import html
import os
import subprocess
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest

from digest import placeholders as ph
from digest.compose import (
    ComposeSettings,
    MessageTemplate,
    Recipient,
    compose,
    compose_message,
    default_list_id,
    message_id,
    personalise_many,
)
from digest.errors import ConfigError, SubscriberError
from digest.models import Rendered, TokenSet

FROM = "Cyber Weekly <digest@example.org>"
DATE = dt.datetime(2018, 1, 15, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
LONG_LINK = "https://example.org/articles/" + "a" * 1200 + "?x=1&y=2"
T = TokenSet.fresh()

AWKWARD = [
    Recipient("zoe@example.org", "Zoë Ångström", "https://digest.example.org/u/TOKzoe"),
    Recipient("lilei@example.org", "李雷", "https://digest.example.org/u/TOKli"),
    Recipient("bob@example.org", 'O\'Brien "Bob"', "https://digest.example.org/u/TOKbob"),
    Recipient("lt@example.org", "<script>alert(1)</script>", "https://digest.example.org/u/TOKlt"),
    Recipient("amp@example.org", "Tom & Jerry", "https://digest.example.org/u/TOKamp"),
    Recipient("long@example.org", "Bartholomew " * 24 + "Zoë" * 4, "https://digest.example.org/u/TOKlong"),
    Recipient("longascii@example.org", "x" * 300, "https://digest.example.org/u/TOKla"),
    Recipient("nobody@example.org", "", "https://digest.example.org/u/TOKnone"),
    Recipient("ann+digest@example.org", "Ann", "https://digest.example.org/u/TOKplus?a=1&b=2"),
    Recipient("ctl@example.org", "Eve\r\nBcc: victim@example.org", "https://digest.example.org/u/TOKctl"),
]


def make_rendered(subject: str = "Cyber Weekly — 2018-W02: 网络安全 & more") -> Rendered:
    body = (
        '<p style="font-family:Arial,sans-serif;color:#333">Ünïcode paragraph with a '
        f'<a href="{html.escape(LONG_LINK)}">very long link</a> and text. </p>'
    ) * 6
    page = (
        f"<html><body><p>{T.greeting}</p>{body}"
        f'<p>Sent to {T.email} ({T.name}). <a href="{T.unsubscribe_url}">Unsubscribe</a></p>'
        "</body></html>\n"
    )
    text = (
        f"{T.greeting}\n\nThis week, {T.name}:\n\n* 网络安全 news\n  {LONG_LINK}\n\n"
        f"Sent to {T.email}.\nUnsubscribe: {T.unsubscribe_url}\n"
    )
    return Rendered("2018-W02", "all", ("Policy",), subject, page, text, T)


def make_settings(**kw: object) -> ComposeSettings:
    base: dict[str, object] = {
        "from_": FROM,
        "list_id": default_list_id("Cyber Weekly", FROM),
        "date": DATE,
        "unsubscribe_mailto": "unsubscribe@example.org",
    }
    base.update(kw)
    return ComposeSettings(**base)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def summary(msg: EmailMessage) -> dict[str, object]:
    """Everything a reader sees: decoded headers in order, and each part."""
    parts = [
        (p.get_content_type(), p.get_content_charset(), p["Content-Transfer-Encoding"], p.get_content())
        for p in msg.walk()
        if not p.is_multipart()
    ]
    return {"headers": [(k, str(v)) for k, v in msg.items()], "parts": parts}


def lines_of(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n")
    return data[:-2].split(b"\r\n")


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return make_rendered()


@pytest.fixture(scope="module")
def template(rendered: Rendered) -> MessageTemplate:
    return MessageTemplate.build(rendered, make_settings())


def test_reference_message_structure(rendered: Rendered) -> None:
    r = AWKWARD[0]
    msg = parse(compose(rendered, r, make_settings()).data)
    assert msg.get_content_type() == "multipart/alternative"
    plain, rich = msg.iter_parts()
    assert plain.get_content_type() == "text/plain" and rich.get_content_type() == "text/html"
    assert plain.get_content_charset() == rich.get_content_charset() == "utf-8"
    assert plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg["MIME-Version"] == "1.0"
    assert str(msg["Subject"]) == "Cyber Weekly — 2018-W02: 网络安全 & more"
    assert msg["To"].addresses[0].display_name == "Zoë Ångström"
    assert msg["To"].addresses[0].addr_spec == "zoe@example.org"
    assert msg["From"].addresses[0].addr_spec == "digest@example.org"
    assert msg["Date"].datetime == DATE
    assert msg["List-Id"] == "Cyber Weekly <cyber-weekly.example.org>"
    assert msg["List-Unsubscribe"] == (
        "<https://digest.example.org/u/TOKzoe>, <mailto:unsubscribe@example.org?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Precedence"] == "bulk"
    assert msg["Message-ID"] == message_id("2018-W02", "zoe@example.org", "example.org")
    text = plain.get_content().replace("\r\n", "\n")
    assert text.startswith("Hello Zoë Ångström,\n\nThis week, Zoë Ångström:")
    assert LONG_LINK in text and "Unsubscribe: https://digest.example.org/u/TOKzoe\n" in text
    page = rich.get_content().replace("\r\n", "\n")
    assert f'href="{html.escape(LONG_LINK)}"' in page
    assert '<a href="https://digest.example.org/u/TOKzoe">Unsubscribe</a>' in page
    assert not any(t in page + text for _, t in T.pairs())


def test_compose_message_returns_email_message(rendered: Rendered) -> None:
    msg = compose_message(rendered, AWKWARD[2], make_settings())
    assert isinstance(msg, EmailMessage)
    assert msg["To"].addresses[0].display_name == 'O\'Brien "Bob"'


def test_html_values_are_escaped(rendered: Rendered, template: MessageTemplate) -> None:
    r = AWKWARD[3]
    for data in (compose(rendered, r, make_settings()).data, template.personalise(r).data):
        page = parse(data).get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "<script>" not in page
        assert "(&lt;script&gt;alert(1)&lt;/script&gt;)" in page
        text = parse(data).get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "This week, <script>alert(1)</script>:" in text


def test_subject_cannot_inject_headers() -> None:
    r = make_rendered("Breaking news\r\nBcc: attacker@example.net\nX-Evil: 1\x00\x1b")
    for data in (
        compose(r, AWKWARD[0], make_settings()).data,
        MessageTemplate.build(r, make_settings()).personalise(AWKWARD[0]).data,
    ):
        msg = parse(data)
        assert msg["Bcc"] is None and msg["X-Evil"] is None
        assert msg.get_all("Subject") == ["Breaking news Bcc: attacker@example.net X-Evil: 1"]
        assert not any(line.lower().startswith((b"bcc", b"x-evil")) for line in lines_of(data))


@pytest.mark.parametrize(
    "subject",
    ["Ünïcode " * 30, "a" * 250 + " end", "=?utf-8?q?not_an_encoded_word?= plain", "Plain ASCII subject"],
)
def test_subject_round_trips(subject: str) -> None:
    msg = parse(compose(make_rendered(subject), AWKWARD[1], make_settings()).data)
    assert str(msg["Subject"]) == " ".join(subject.split())


@pytest.mark.parametrize("recipient", AWKWARD, ids=lambda r: r.email)
def test_spliced_equals_reference(rendered: Rendered, template: MessageTemplate, recipient: Recipient) -> None:
    slow = compose(rendered, recipient, make_settings())
    fast = template.personalise(recipient)
    assert summary(parse(fast.data)) == summary(parse(slow.data))
    assert (fast.issue_key, fast.recipient, fast.message_id) == (
        slow.issue_key,
        slow.recipient,
        slow.message_id,
    )
    to = parse(fast.data)["To"].addresses
    assert len(to) == 1
    assert to[0].addr_spec == recipient.email
    assert to[0].display_name == " ".join(recipient.name.split())


def test_bodies_match_placeholder_fill(rendered: Rendered, template: MessageTemplate) -> None:
    r = AWKWARD[8]
    mine = ph.personalise(rendered, ph.values_for(r.name, r.email, r.unsubscribe_url, title="Cyber Weekly"))
    msg = parse(template.personalise(r).data)
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    page = msg.get_body(("html",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert text == mine.text
    assert page == mine.html
    assert 'href="https://digest.example.org/u/TOKplus?a=1&amp;b=2"' in page


@pytest.mark.parametrize("recipient", AWKWARD, ids=lambda r: r.email)
def test_lines_are_crlf_and_short(rendered: Rendered, template: MessageTemplate, recipient: Recipient) -> None:
    for data in (compose(rendered, recipient, make_settings()).data, template.personalise(recipient).data):
        assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
        assert max(len(line) for line in lines_of(data)) <= 998
    head, _, body = template.personalise(recipient).data.partition(b"\r\n\r\n")
    # Folded headers stay within 78 unless one word is longer (a URL, a 300-letter name);
    # quoted-printable lines within 76.
    long_words = (b"/u/", b"x" * 100)
    assert all(len(line) <= 78 for line in lines_of(head + b"\r\n") if not any(w in line for w in long_words))
    assert max(len(line) for line in lines_of(body)) <= 76


def test_reproducible_and_personal(template: MessageTemplate) -> None:
    a = template.personalise(AWKWARD[0])
    assert a.data == template.personalise(AWKWARD[0]).data
    b = template.personalise(AWKWARD[1])
    assert a.message_id != b.message_id
    assert a.message_id.endswith("@example.org>") and a.message_id.startswith("<2018-W02.")
    same = Recipient("ZOE@example.org", "Zoë Ångström", AWKWARD[0].unsubscribe_url)
    assert template.personalise(same).message_id == a.message_id


def test_message_id_for_range_key_is_valid() -> None:
    mid = message_id("2018-W01..2018-W03", "a@example.org", "example.org")
    assert ".." not in mid
    assert parse(b"Message-ID: " + mid.encode() + b"\r\n\r\n")["Message-ID"] == mid


def test_without_mailto(rendered: Rendered) -> None:
    settings = make_settings(unsubscribe_mailto="")
    fast = MessageTemplate.build(rendered, settings).personalise(AWKWARD[0])
    assert parse(fast.data)["List-Unsubscribe"] == "<https://digest.example.org/u/TOKzoe>"
    assert summary(parse(fast.data)) == summary(parse(compose(rendered, AWKWARD[0], settings).data))


def test_personalise_many(template: MessageTemplate) -> None:
    out = personalise_many(template, AWKWARD)
    assert [o.recipient for o in out] == [r.email for r in AWKWARD]
    assert len({o.message_id for o in out}) == len(AWKWARD)


def test_bad_recipient_is_refused(template: MessageTemplate) -> None:
    with pytest.raises(SubscriberError):
        template.personalise(Recipient("a@example.org\r\nBcc: b@example.org", "A", "https://x.org/u/t"))
    with pytest.raises(SubscriberError):
        template.personalise(Recipient("a@example.org", "A", "https://x.org/u/t>\r\nX: y"))


def test_bad_settings_are_config_errors(rendered: Rendered) -> None:
    with pytest.raises(ConfigError):
        MessageTemplate.build(rendered, make_settings(from_="nobody"))
    with pytest.raises(ConfigError):
        MessageTemplate.build(rendered, make_settings(dkim_selector="s1", dkim_key=b"not a key"))


# -- DKIM ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    folder: Path = tmp_path_factory.mktemp("dkim")
    key = folder / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    return key.read_bytes(), base64.b64encode(der).decode("ascii")


def test_dkim_signature_verifies(rendered: Rendered, rsa_key: tuple[bytes, str]) -> None:
    pem, public = rsa_key
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return f"v=DKIM1; k=rsa; p={public}".encode("ascii")

    settings = make_settings(dkim_selector="s2018", dkim_key=pem)
    fast = MessageTemplate.build(rendered, settings).personalise(AWKWARD[0])
    slow = compose(rendered, AWKWARD[0], settings)
    for data in (fast.data, slow.data):
        assert data.startswith(b"DKIM-Signature: ")
        assert max(len(line) for line in lines_of(data)) <= 998
        assert dkim.verify(data, dnsfunc=dns)
        signed = parse(data)["DKIM-Signature"]
        assert "d=example.org" in signed and "s=s2018" in signed
        listed = [h.strip().lower() for h in "".join(signed.split()).split("h=")[1].split(";")[0].split(":")]
        # Oversigned: each listed once more than the message has it (Reply-To: none, so once).
        for header in OVERSIGNED:
            assert listed.count(header) == len(parse(data).get_all(header) or []) + 1, header
        assert listed.count("from") == 2 and listed.count("reply-to") == 1
    assert asked == [b"s2018._domainkey.example.org."] * 2
    tampered = fast.data.replace(b"To: =?utf-8?b?", b"To: =?UTF-8?b?", 1)
    assert tampered != fast.data
    assert not dkim.verify(tampered, dnsfunc=dns)


OVERSIGNED = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "reply-to",
)


@pytest.mark.parametrize(
    "added",
    [
        b"From: Attacker <ceo@example.org>\r\n",
        b"Subject: Urgent: reset your password\r\n",
        b"To: victim@example.net\r\n",
        b"Reply-To: attacker@example.net\r\n",
        b"List-Unsubscribe: <https://evil.example/u>\r\n",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        b"List-Id: Other <other.example.net>\r\n",
        b"Message-ID: <forged@example.net>\r\n",
        b"Date: Tue, 16 Jan 2018 08:00:00 +0000\r\n",
    ],
    ids=lambda h: h.split(b":")[0].decode(),
)
def test_a_header_added_after_signing_fails_dkim(rendered: Rendered, rsa_key: tuple[bytes, str], added: bytes) -> None:
    pem, public = rsa_key

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return f"v=DKIM1; k=rsa; p={public}".encode("ascii")

    data = (
        MessageTemplate.build(rendered, make_settings(dkim_selector="s2018", dkim_key=pem)).personalise(AWKWARD[0]).data
    )
    assert dkim.verify(data, dnsfunc=dns)
    assert not dkim.verify(added + data, dnsfunc=dns)  # prepended, above the signature
    signature_end = data.index(b"\r\nFrom: ") + 2
    assert not dkim.verify(data[:signature_end] + added + data[signature_end:], dnsfunc=dns)  # below it
    # A header that is not signed may still be added (a relay's Received, say).
    assert dkim.verify(b"Received: from relay.example.org\r\n" + data, dnsfunc=dns)


def test_long_non_ascii_name_follows_rfc2047(rendered: Rendered, template: MessageTemplate) -> None:
    name = "李雷" * 40 + " Zoë"
    r = Recipient("li@example.org", name, "https://digest.example.org/u/TOKli")
    fast = template.personalise(r)
    assert summary(parse(fast.data)) == summary(parse(compose(rendered, r, make_settings()).data))
    head = fast.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    to = head.split("\r\nTo: ", 1)[1].split("\r\nSubject: ", 1)[0]
    assert to.endswith("<li@example.org>") and to.count("=?utf-8?b?") > 2
    assert all(len(line) <= 78 for line in to.split("\r\n"))
    # RFC 2047 decoders drop the folding space between adjacent encoded words.
    phrase = to.rsplit("<", 1)[0].replace("\r\n", "").strip()
    assert str(make_header(decode_header(phrase))) == name


# -- golden ----------------------------------------------------------------------

GOLDEN = Path(__file__).parent / "golden" / "compose-sample.eml"
# Read at import: an autouse fixture clears DIGEST_* variables before each test.
UPDATE_GOLDEN = os.environ.get("DIGEST_UPDATE_GOLDEN") == "1"
SAMPLE = Path(__file__).parent / "data" / "compose"


def test_golden_sample_message() -> None:
    """The whole wire form of one message; DIGEST_UPDATE_GOLDEN=1 rewrites it for review."""
    rendered = Rendered(
        "2018-W02",
        "all",
        ("Policy",),
        "Cyber Weekly — 2018-W02: 网络安全",
        (SAMPLE / "sample.html").read_text(encoding="utf-8"),
        (SAMPLE / "sample.txt").read_text(encoding="utf-8"),
        ph.LEGACY,  # the sample holds the fixed tokens of variants frozen before migration 4
    )
    recipient = Recipient("zoe+digest@example.org", "Zoë Ångström", "https://digest.example.org/u/TOKEN")
    data = MessageTemplate.build(rendered, make_settings()).personalise(recipient).data
    assert summary(parse(data)) == summary(parse(compose(rendered, recipient, make_settings()).data))
    if UPDATE_GOLDEN:
        GOLDEN.write_bytes(data)
    assert data == GOLDEN.read_bytes(), f"{GOLDEN} differs; DIGEST_UPDATE_GOLDEN=1 rewrites it"
