"""Header folding (RFC 5322, RFC 2369/8058) and the List-Id (RFC 2919), on whole messages.

Every message is built both ways (the reference ``compose`` and the spliced
template) and parsed back with the stdlib parser: folding must only ever
change where lines break, never the value.
"""

from __future__ import annotations

import email
import re
from email import policy
from email.header import decode_header, make_header

import pytest

from digest.compose import MessageTemplate, Recipient, compose, default_list_id
from digest.compose.headers import MAX_HEADER_LINE, fold_list_unsubscribe, split_list_id
from digest.errors import ConfigError
from tests.test_compose import FROM, lines_of, make_rendered, make_settings, parse

#: A real unsubscribe URL: base_url, "/u/" and a 43-character token.
TOKEN = "AUjLHcI_l4pXU8xvSirKFN6HIAXj5x-wcV7UtFnHBKg"
URL = f"https://digest.example.org/u/{TOKEN}"
MAILTO = "unsubscribe@example.org?subject=unsubscribe"

HOSTILE = [
    Recipient("ann@example.org", "Ann", URL),
    Recipient("bob@example.org", 'O\'Brien "Bob" ' * 9, URL),
    Recipient("dr@example.org", "Dr. John Q. Public, Jr. (the third) of the house of many names, again and more", URL),
    Recipient("bs@example.org", 'back\\slash "quoted" ' * 12, URL),
    Recipient("zoe@example.org", "Zoë Ångström " * 10, URL),
    Recipient("mix@example.org", "Ann (Lab) Zoë, " * 8 + "李雷" * 20, URL),
    Recipient("x" * 64 + "@" + "sub." * 20 + "example.org", "A long address", URL),
    Recipient("long@example.org", "plain words " * 25, URL + "?list=cyber-weekly&lang=en&ref=" + "r" * 30),
    Recipient("word@example.org", "y" * 120, URL),
    Recipient("nobody@example.org", "", URL),
]


def header_fields(data: bytes) -> list[list[str]]:
    """Each header field of ``data`` as its lines (first line and continuations)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    fields: list[list[str]] = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def foldable(line: str) -> bool:
    """Whether a line over 78 could have been broken: it holds two words after ``Name:``.

    A word is what lies between spaces: an over-long URL, address or atom
    cannot be broken. (A first word could also move to a line of its own,
    but only address fields do that: ``test_an_address_too_long_for_the_first_line``.)
    """
    return len(re.sub(r"^[!-9;-~]+:", "", line).split()) > 1


def unfold(value: str) -> str:
    """RFC 5322 §2.2.3 unfolding, and the whitespace after the colon dropped."""
    return value.replace("\r\n", "").strip()


@pytest.mark.parametrize("recipient", HOSTILE, ids=lambda r: r.email[:20])
def test_every_header_line_is_78_or_less_where_it_can_be(recipient: Recipient) -> None:
    rendered = make_rendered("Cyber Weekly 2018-W02: " + "policy and protocols " * 12)
    settings = make_settings(list_id=default_list_id("The Cyber Policy Weekly of the Example Institute " * 3, FROM))
    for data in (
        compose(rendered, recipient, settings).data,
        MessageTemplate.build(rendered, settings).personalise(recipient).data,
    ):
        for field in header_fields(data):
            for line in field:
                assert len(line) <= MAX_HEADER_LINE or not foldable(line), field
                assert line.strip(), f"a line of only whitespace in {field}"
                assert not line.endswith((" ", "\t")), f"trailing whitespace in {field}"
        assert max(len(line) for line in lines_of(data)) <= 998


@pytest.mark.parametrize("recipient", HOSTILE, ids=lambda r: r.email[:20])
def test_folded_values_parse_back_unchanged(recipient: Recipient) -> None:
    rendered = make_rendered("Cyber Weekly 2018-W02: " + "policy and protocols " * 12)
    settings = make_settings(unsubscribe_mailto=MAILTO)
    unsubscribe = f"<{recipient.unsubscribe_url}>, <mailto:{MAILTO}>"
    name = " ".join(recipient.name.split())
    fast = MessageTemplate.build(rendered, settings).personalise(recipient).data
    slow = compose(rendered, recipient, settings).data
    assert header_fields(fast) == header_fields(slow)
    modern = parse(fast)
    assert modern["To"].addresses[0].addr_spec == recipient.email
    if not re.search(r"[^ -~]|\S{70}", name):  # plain ASCII: no encoded words (see below for those)
        assert modern["To"].addresses[0].display_name == name
    assert unfold(str(modern["List-Unsubscribe"])).strip() == unsubscribe
    assert str(modern["Subject"]) == " ".join(rendered.subject.split())
    assert str(modern["List-Id"]) == "Cyber Weekly <cyber-weekly.example.org>"
    # The classic parser keeps the folds; unfolded, the value is the same.
    classic = email.message_from_bytes(fast, policy=policy.compat32)
    assert unfold(classic["List-Unsubscribe"]).strip() == unsubscribe
    display, addr = email.utils.parseaddr(unfold(classic["To"]))
    assert addr == recipient.email
    assert str(make_header(decode_header(display))) == name if "=?" in unfold(classic["To"]) else display == name


def test_list_unsubscribe_folds_before_and_between_its_urls() -> None:
    value = fold_list_unsubscribe(URL, MAILTO)
    # The URL does not fit after "List-Unsubscribe: " (RFC 2369 allows folding white space before it).
    assert len("List-Unsubscribe: " + f"<{URL}>,") > 78
    assert value == f"\r\n <{URL}>,\r\n <mailto:{MAILTO}>"
    data = MessageTemplate.build(make_rendered(), make_settings(unsubscribe_mailto=MAILTO)).personalise(HOSTILE[0]).data
    assert f"\r\nList-Unsubscribe:\r\n <{URL}>,\r\n <mailto:{MAILTO}>\r\n".encode() in data
    assert all(len(line) <= 78 for line in header_lines_of(data, "List-Unsubscribe"))
    # Parsers read the same URLs (Python keeps the fold's space in front: white space RFC 2369 allows).
    assert str(parse(data)["List-Unsubscribe"]).strip() == f"<{URL}>, <mailto:{MAILTO}>"
    short = fold_list_unsubscribe("https://x.org/u/t", MAILTO)
    assert short.startswith("<https://x.org/u/t>,")  # fits: stays on the first line
    # No whitespace inside the brackets (RFC 2369), whatever the length.
    long_url = URL + "?" + "q" * 200
    assert f"<{long_url}>" in fold_list_unsubscribe(long_url, MAILTO)
    assert fold_list_unsubscribe("https://x.org/u/t", "") == "<https://x.org/u/t>"


def test_an_address_too_long_for_the_first_line_starts_on_the_next() -> None:
    r = Recipient("a" * 30 + "@" + "mail." * 7 + "example.org", "", URL)  # 77 characters
    for data in (
        MessageTemplate.build(make_rendered(), make_settings()).personalise(r).data,
        compose(make_rendered(), r, make_settings()).data,
    ):
        assert f"\r\nTo:\r\n {r.email}\r\n".encode() in data
        assert parse(data)["To"].addresses[0].addr_spec == r.email
        assert unfold(email.message_from_bytes(data, policy=policy.compat32)["To"]) == r.email


def test_a_long_name_folds_inside_its_quoted_string_and_keeps_its_spaces() -> None:
    r = HOSTILE[1]
    data = MessageTemplate.build(make_rendered(), make_settings()).personalise(r).data
    to = next(f for f in header_fields(data) if f[0].startswith("To:"))
    assert len(to) > 1 and all(len(line) <= MAX_HEADER_LINE for line in to)
    assert parse(data)["To"].addresses[0].display_name == " ".join(r.name.split())


# -- List-Id ---------------------------------------------------------------------


def test_the_generated_list_id_is_unchanged_for_a_usual_title() -> None:
    # Unsubscribe tokens are signed with the List-Id: it must not move under existing lists.
    assert default_list_id("Cyber Weekly", FROM) == "Cyber Weekly <cyber-weekly.example.org>"
    assert default_list_id("Zoë's  AI & Policy", FROM) == "Zoë's AI & Policy <zo-s-ai-policy.example.org>"
    assert default_list_id("!!!", FROM) == "!!! <digest.example.org>"


@pytest.mark.parametrize(
    "title",
    [
        "A very long title " * 30,
        "x" * 400,
        "Weekly-" * 80,
        "网络安全 " * 100 + "Weekly",
        "The " + "Z" * 70 + " Digest",
    ],
)
def test_a_long_title_gives_a_valid_list_id(title: str) -> None:
    list_id = default_list_id(title, FROM)
    name, label = split_list_id(list_id)
    slug = label.removesuffix(".example.org")
    assert 1 <= len(slug) <= 63 and len(label) <= 255
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug)
    assert name and len(name) <= 300
    # The message builds, and its List-Id header reads back as the id.
    data = MessageTemplate.build(make_rendered(), make_settings(list_id=list_id)).personalise(HOSTILE[0]).data
    header = str(parse(data)["List-Id"])
    assert header.endswith(f"<{label}>")


def test_a_long_domain_still_leaves_the_id_within_255_octets() -> None:
    domain = ("d" * 60 + ".") * 3 + "example.org"  # 194 octets
    list_id = default_list_id("Cyber Weekly " * 10, f"Digest <digest@{domain}>")
    _, label = split_list_id(list_id)
    assert len(label) <= 255 and label.endswith("." + domain)
    with pytest.raises(ConfigError, match="too long to name a List-Id"):
        default_list_id("Cyber Weekly", "digest@" + "d" * 254 + ".org")


@pytest.mark.parametrize(
    ("list_id", "message"),
    [
        ("Weekly <" + "a" * 250 + ".example.org>", "at most 255"),
        ("Weekly", "must look like"),
        ("Weekly <nodots>", "must look like"),
        ("Weekly <.leading.example.org>", "must look like"),
        ("Weekly <two..dots.example.org>", "must look like"),
        ("Weekly <spaced label.example.org>", "must look like"),
        ("Weekly <open.example.org", "must look like"),
    ],
)
def test_a_bad_configured_list_id_is_a_config_error(list_id: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        split_list_id(list_id)
    with pytest.raises(ConfigError, match=r"digest\.list_id"):
        MessageTemplate.build(make_rendered(), make_settings(list_id=list_id))


def test_a_good_configured_list_id_passes() -> None:
    assert split_list_id("Cyber  Weekly <cyber.lists.example.org>") == ("Cyber Weekly", "cyber.lists.example.org")
    assert split_list_id("<weekly.example.org>") == ("", "weekly.example.org")
    exactly = "a" * 243 + ".example.org"
    assert split_list_id(f"W <{exactly}>")[1] == exactly and len(exactly) == 255


def header_lines_of(data: bytes, name: str) -> list[bytes]:
    """The raw lines of header ``name`` (its first line and its continuation lines)."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    start = next(i for i, line in enumerate(head) if line.startswith(name.encode() + b":"))
    lines = [head[start]]
    for line in head[start + 1 :]:
        if line[:1] not in (b" ", b"\t"):
            break
        lines.append(line)
    return lines
