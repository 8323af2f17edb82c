"""placeholders: random tokens, the one ``personalise``, and what no feed can do with them.

The property tests check the two promises of the module: compose's spliced
message decodes to exactly ``personalise`` for any values, and no feed text
(nested look-alikes of the very tokens of the rendering, entities, tokens cut
by tags, the old fixed tokens) puts a subscriber's address or unsubscribe
link anywhere the templates did not.
"""

from __future__ import annotations

import datetime as dt
import email
import html
import itertools
import re
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest import placeholders as ph
from digest.compose import ComposeSettings, MessageTemplate, Recipient, compose
from digest.compose.headers import MAX_NAME, clean_text
from digest.errors import RenderError
from digest.grouping import build_issue, issue_key
from digest.models import Author, Entry, IsoWeek, Issue, Rendered, TokenSet
from digest.render import Renderer, RenderSettings
from tests.data.render.sample_entries import THEMES, TZ

FROM = "Cyber Weekly <digest@example.org>"
SETTINGS = ComposeSettings(
    from_=FROM,
    list_id="Cyber Weekly <cyber-weekly.example.org>",
    date=dt.datetime(2018, 1, 15, 8, 0, tzinfo=dt.UTC),
    unsubscribe_mailto="unsubscribe@example.org",
    title="Cyber Weekly",
)
W02 = [IsoWeek(2018, 2)]
ADDRESS = "ann.subscriber@example.net"
SECRET_URL = "https://digest.example.org/u/SECRETq7Zk"


# -- tokens and the reference --------------------------------------------------------


def test_fresh_tokens_are_random_ascii_and_never_overlap() -> None:
    one, two = TokenSet.fresh(), TokenSet.fresh()
    tokens = [t for _, t in one.pairs()] + [t for _, t in two.pairs()]
    assert len(set(tokens)) == 2 * len(one.pairs())
    assert all(re.fullmatch(r"X[0-9a-f]{32}", t) for t in tokens)
    # "X" only at the start: no token's tail is another's head, so cuts are unambiguous.
    assert not any(a[i:] == b[: len(a) - i] for a in tokens for b in tokens for i in range(1, len(a)))


def test_personalise_fills_each_token_once_and_escapes_html() -> None:
    t = TokenSet.fresh()
    rendered = Rendered(
        "2018-W02",
        "all",
        (),
        f"{t.greeting} news for {t.name}",
        f'<p>{t.greeting}</p><a href="{t.unsubscribe_url}">x</a><p>{t.footer_note}</p>',
        f"{t.greeting}\n{t.footer_note}\n{t.unsubscribe_url}\n",
        t,
    )
    # A name that holds another token is not filled again: filling is one pass over the cut.
    values = ph.values_for(f"Tom & <b>{t.email}</b>", "t@example.org", "https://x.example/u/a?b=1&c=2", title="R&D")
    mine = ph.personalise(rendered, values)
    assert mine.subject == f"Hello Tom & <b>{t.email}</b>, news for Tom & <b>{t.email}</b>"
    assert mine.html == (
        f"<p>Hello Tom &amp; &lt;b&gt;{t.email}&lt;/b&gt;,</p>"
        '<a href="https://x.example/u/a?b=1&amp;c=2">x</a>'
        "<p>You get this because you subscribed to R&amp;D as t@example.org.</p>"
    )
    assert mine.text.splitlines()[1:] == [
        "You get this because you subscribed to R&D as t@example.org.",
        "https://x.example/u/a?b=1&c=2",
    ]


def test_web_values_name_no_one() -> None:
    web = ph.web_values("Cyber Weekly", "https://digest.example.org/")
    assert (web.name, web.email, web.greeting) == ("", "", "Hello,")
    assert web.unsubscribe_url == "https://digest.example.org/unsubscribe-help"
    assert web.footer_note == "You are reading the web version of Cyber Weekly."


def test_cut_and_join_are_inverse() -> None:
    t = TokenSet.fresh()
    text = f"a{t.name}{t.name}b{t.email}"
    pieces, keys = ph.cut(text, t)
    assert (pieces, keys) == (("a", "", "b", ""), ("name", "name", "email"))
    assert ph.join(pieces, keys, dict(t.pairs())) == text


def test_stored_token_sets_round_trip_and_bad_ones_are_refused() -> None:
    t = TokenSet.fresh()
    assert ph.tokens_from_json(ph.tokens_to_json(t)) == t
    assert ph.tokens_from_json(ph.tokens_to_json(ph.LEGACY)) == ph.LEGACY
    good = dict(t.pairs())
    for bad in (
        "[]",
        "not json",
        '{"name": "Xabcdefgh"}',  # keys missing
        ph.tokens_to_json(t).replace(t.name, t.email),  # two keys, one token
        ph.tokens_to_json(t).replace(t.name, "short"),
        ph.tokens_to_json(t).replace(t.name, "X<script>aaaaa"),
        str({**good, "extra": "Xabcdefghij"}).replace("'", '"'),
    ):
        with pytest.raises(ValueError):
            ph.tokens_from_json(bad)


# -- the spliced message equals the reference, for any values ---------------------------

T = TokenSet.fresh()
_TOKENS = [tok for _, tok in T.pairs()]
_AWKWARD = st.sampled_from(
    [*list("ab =<>&\"'\r\n\t.é中\x00\x85\u2028"), "\r\n", "=20", "=\r\n", "From ", " \r", "\n.", ".\r\n", "\n..\n"]
)
_FRAGMENT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12) | _AWKWARD
_BODY = st.lists(_FRAGMENT | st.sampled_from(_TOKENS), max_size=14).map("".join)
_LONG = st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "= ", "中", ".", "a."]), st.integers(70, 200))
_NAME = st.text(st.characters(exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", "\r", "a=b", "<&>", ".", ".\r\n.", "." * 90]
)
_EMAIL = st.from_regex(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,30}@[A-Za-z0-9.-]{1,30}", fullmatch=True)
_URL = st.from_regex(r"https://digest\.example\.org/u/[!#-;=?-~]{0,80}", fullmatch=True)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def decoded(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body((kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def as_mime_text(text: str) -> str:
    """What ``set_content`` makes of a text: CR, LF and CRLF are line ends; a final one is added."""
    return b"\n".join(text.encode("utf-8").splitlines()).decode("utf-8") + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=st.lists(st.text(max_size=10) | st.sampled_from(_TOKENS), max_size=5).map("".join),
    text=_BODY | st.builds(str.__add__, _BODY, _LONG),
    page=_BODY,
    name=_NAME,
    address=_EMAIL,
    url=_URL,
)
def test_the_spliced_message_is_the_reference_for_any_values(
    subject: str, text: str, page: str, name: str, address: str, url: str
) -> None:
    rendered = Rendered("2018-W02", "all", ("Policy",), subject, page, text, T)
    recipient = Recipient(address, name, url)
    fast = MessageTemplate.build(rendered, SETTINGS).personalise(recipient)
    slow = compose(rendered, recipient, SETTINGS)
    mine = ph.personalise(rendered, ph.values_for(clean_text(name, MAX_NAME), address, url, title="Cyber Weekly"))

    fast_head, _, fast_body = fast.data.partition(b"\r\n\r\n")
    slow_head, _, _ = slow.data.partition(b"\r\n\r\n")
    assert fast_head == slow_head  # To, Subject (filled), Message-ID, List-Unsubscribe, byte for byte
    a, b = parse(fast.data), parse(slow.data)
    assert decoded(a, "plain") == decoded(b, "plain") == as_mime_text(mine.text)
    assert decoded(a, "html") == decoded(b, "html") == as_mime_text(mine.html)
    assert str(a["Subject"]) == str(b["Subject"])
    lines = fast_body.split(b"\r\n")
    assert b"\r" not in b"".join(lines) and b"\n" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 76
    # No line starts with a dot, so the sender sends the bytes without dot-stuffing them.
    assert fast.dot_safe
    assert not any(line.startswith(b".") for line in fast.data.split(b"\r\n"))


@pytest.mark.parametrize(
    "text",
    [
        f"abc\n{T.name}",  # an empty value at the very end
        f"abc{T.name}",
        f"{T.name}",
        f"x\r{T.name}\ny",  # a lone CR meets an LF across an empty value
        f"x\r{T.name}{T.email}\n",
        f"\r{T.name}",
        "lone\rcarriage\r",
    ],
)
def test_empty_values_and_lone_crs_splice_like_the_reference(text: str) -> None:
    rendered = Rendered("2018-W02", "all", (), "S", "<p></p>", text, T)
    recipient = Recipient("a@example.org", "", "https://digest.example.org/u/x")
    fast = parse(MessageTemplate.build(rendered, SETTINGS).personalise(recipient).data)
    slow = parse(compose(rendered, recipient, SETTINGS).data)
    assert decoded(fast, "plain") == decoded(slow, "plain")


# -- no feed text can place a subscriber's value ---------------------------------------------


def _renderer(draws: Callable[[], TokenSet] = TokenSet.fresh) -> Renderer:
    return Renderer(
        RenderSettings(title="Cyber Weekly", base_url="https://digest.example.org", tz=TZ, templates_dir=None),
        draw_tokens=draws,
    )


def _first_then_fresh(first: TokenSet) -> Callable[[], TokenSet]:
    """A draw that returns ``first`` (the tokens a hostile feed was written against), then random ones."""
    seq: Iterator[TokenSet] = itertools.chain([first], iter(TokenSet.fresh, None))
    return lambda: next(seq)


def _issue(title: str, summary: str, content: str, link: str, author: str) -> Issue:
    when = dt.datetime(2018, 1, 10, 9, tzinfo=TZ)
    entries = [
        Entry(
            id="a",
            source="Evil feed",
            title=title,
            link=link,
            summary=summary,
            authors=(Author(author, author),),
            tags=(title,),
            published=when,
        ),
        Entry(id="b", source="Evil feed", title=title + " 2", link=link, content=content, published=when),
    ]
    return build_issue(
        entries, title="Cyber Weekly", weeks=W02, themes=THEMES, source_themes={}, tz=TZ, key=issue_key(W02)
    )


def _counts(rendered: Rendered) -> dict[str, tuple[int, int]]:
    mine = ph.personalise(rendered, ph.values_for("Ann", ADDRESS, SECRET_URL, title="Cyber Weekly"))
    return {
        k: (v.count(ADDRESS), v.count("SECRETq7Zk"))
        for k, v in (("s", mine.subject), ("h", mine.html), ("t", mine.text))
    }


def _spots(rendered: Rendered) -> tuple[tuple[str, ...], ...]:
    """Which value goes at each token of subject, HTML and text, in order."""
    return tuple(ph.cut(part, rendered.tokens)[1] for part in (rendered.subject, rendered.html, rendered.text))


@pytest.fixture(scope="module")
def benign() -> tuple[dict[str, tuple[int, int]], tuple[tuple[str, ...], ...]]:
    rendered = _renderer().render_variant(_issue("Prize", "Hi", "<p>Hi</p>", "https://ok.example/", "Bo"), None)
    counts = _counts(rendered)
    assert counts["h"] == (1, 1) and counts["t"][0] >= 1 and counts["t"][1] >= 1
    return counts, _spots(rendered)


def _lookalikes(token: str) -> list[str]:
    """Ways feed text may try to be ``token`` after escaping, sanitising or tag stripping."""
    k = len(token) // 2
    entity = "".join(f"&#{ord(c)};" for c in token[:3]) + token[3:]
    return [
        token,
        token[:k] + token + token[k:],  # nested: whatever removes the inner one leaves the outer
        entity,
        f"&#x{ord(token[0]):x};{token[1:]}",
        token[:k] + "<b></b>" + token[k:],  # cut by a tag
        token[:k] + "<!-- -->" + token[k:],
        html.escape(token[:k]) + "&amp;" + token[k:],
    ]


_LEGACY = [tok for _, tok in ph.LEGACY.pairs()]
_HOSTILE_BITS = st.lists(
    st.sampled_from([*_LEGACY, "DIGE" + ph.LEGACY.email + "STxEMAILx7f3a", "&#85;", "&#68;IGESTxUNSUBx7f3a"])
    | st.sampled_from(["<b>", "</b>", "&", "<!--", "-->", " ", "&#x58;", "X"])
    | st.text(alphabet="Xabcdef0123456789", max_size=6),
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_feed_text_puts_a_subscriber_value_anywhere_but_the_templates_spots(
    benign: tuple[dict[str, tuple[int, int]], tuple[tuple[str, ...], ...]], data: st.DataObject
) -> None:
    current = TokenSet.fresh()  # the tokens this rendering is first offered; the feed knows them
    tokens = [tok for _, tok in current.pairs()]
    known = st.sampled_from([x for t in tokens for x in _lookalikes(t)])
    field = st.lists(known | _HOSTILE_BITS.map("".join), min_size=1, max_size=5).map("".join)
    title, summary, content, author = (data.draw(field) for _ in range(4))
    link = "https://evil.example.org/track?who=" + data.draw(field)
    rendered = _renderer(_first_then_fresh(current)).render_variant(_issue(title, summary, content, link, author), None)
    counts, spots = benign
    assert _counts(rendered) == counts
    assert _spots(rendered) == spots  # the rendering's tokens are at the templates' spots only


def test_the_issue_examples_are_inert() -> None:
    """The nested look-alike and the entity that beat the old one-pass scrub."""
    t = TokenSet.fresh()
    nested = "DIGE" + ph.LEGACY.unsubscribe_url + "STxUNSUBx7f3a"
    hostile = _issue(
        f"Prize for {nested} {t.email}",
        f"&#85; &#68;IGESTxEMAILx7f3a {ph.LEGACY.email}",
        f"<p><a href='https://evil.example.org/?u={t.unsubscribe_url}'>&#68;IGESTxUNSUBx7f3a</a>"
        f"{t.email[:9]}<b></b>{t.email[9:]}</p>",
        f"https://evil.example.org/?who={t.email}&u={t.unsubscribe_url}",
        t.name,
    )
    rendered = _renderer(_first_then_fresh(t)).render_variant(hostile, None)
    assert rendered.tokens != t
    mine = ph.personalise(rendered, ph.values_for("Ann", ADDRESS, SECRET_URL, title="Cyber Weekly"))
    evil = mine.html[mine.html.index("evil.example.org") :][:400]
    assert ADDRESS not in evil and "SECRET" not in evil
    assert mine.html.count(ADDRESS) == 1 and mine.html.count("SECRETq7Zk") == 1
    assert "DIGESTxUNSUBx7f3a" in mine.text  # the old tokens are plain text now, shown as sent


def test_a_rendering_whose_feed_keeps_producing_its_tokens_fails() -> None:
    t = TokenSet.fresh()
    hostile = _issue(f"see {t.email}", "x", "<p>x</p>", "https://evil.example.org/", "Bo")
    with pytest.raises(RenderError, match="keep producing placeholder tokens"):
        _renderer(lambda: t).render_variant(hostile, None)


def test_each_rendering_draws_its_own_tokens() -> None:
    issue = _issue("Prize", "Hi", "<p>Hi</p>", "https://ok.example/", "Bo")
    renderer = _renderer()
    one, two = renderer.render_variant(issue, None), renderer.render_variant(issue, None)
    assert one.tokens != two.tokens
    assert ph.swap(one.html, one.tokens, two.tokens) == two.html
    values = ph.values_for("Ann", ADDRESS, SECRET_URL, title="Cyber Weekly")
    assert ph.personalise(one, values) == ph.personalise(two, values)
