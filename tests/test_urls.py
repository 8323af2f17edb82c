"""The URL boundary: every malformed URL is one ``InvalidURL``; canonical forms are stable."""

from __future__ import annotations

import contextlib
import pickle

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from digest import urls
from digest.errors import DigestError, InvalidURL

# Text built from the characters that make URLs interesting, plus anything at all.
_URL_CHARS = st.sampled_from([*list(":/?#[]@!$&'()*+,;=%-._~ \t\r\n\x00\x7fAZaz09é中"), "::", "//", "[::1]", "%zz"])
_URLISH = st.builds(
    lambda scheme, rest: scheme + rest,
    st.sampled_from(["http://", "https://", "HTTP://", "mailto:", "ftp://", "", "//", "http:"]),
    st.lists(st.one_of(_URL_CHARS, st.text(max_size=3)), max_size=30).map("".join),
)


@pytest.mark.parametrize(
    "bad",
    [
        "http://[::1",
        "http://[::1/feed",
        "http://example.org:99999/",
        "http://example.org:port/",
        "http://[zz]/",
        "http://exa mple.org/",
        "http://example.org/a\x00b",
        "http://example.org/\x1b[31m",
        "",
        "   ",
    ],
)
def test_malformed_urls_are_one_invalid_url(bad: str) -> None:
    with pytest.raises(InvalidURL) as caught:
        urls.parse(bad)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, DigestError)
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)


@pytest.mark.parametrize(
    ("good", "host", "port"),
    [
        ("https://Example.ORG/a", "example.org", None),
        ("http://[::1]:8080/x", "::1", 8080),
        ("http://127.0.0.1:0/", "127.0.0.1", 0),
        ("https://bücher.example/", "bücher.example", None),
    ],
)
def test_parse_gives_host_and_port(good: str, host: str, port: int | None) -> None:
    url = urls.parse(good)
    assert (url.host, url.port, url.is_http) == (host, port, True)


def test_http_url_requires_http_and_a_host() -> None:
    assert urls.http_url(" https://example.org/x ") == "https://example.org/x"
    for bad in ("mailto:a@example.org", "ftp://example.org/", "/relative", "http:///nohost", "javascript:alert(1)"):
        assert not urls.is_http(bad)
        with pytest.raises(InvalidURL):
            urls.http_url(bad)


def test_join_and_link() -> None:
    assert urls.join("https://example.org/a/b", "../c?x=1") == "https://example.org/c?x=1"
    assert urls.link("https://example.org/a/", "/feed") == "https://example.org/feed"
    assert urls.link(None, "https://example.org/x") == "https://example.org/x"
    with pytest.raises(InvalidURL):
        urls.link("https://example.org/", "http://[::1")
    with pytest.raises(InvalidURL):
        urls.link("http://[::1", "/x")
    with pytest.raises(InvalidURL):
        urls.link("https://example.org/", "mailto:a@example.org")


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Example.ORG/a/b?utm_source=x&b=2&a=1#frag", "https://example.org/a/b?a=1&b=2"),
        ("http://example.org:80/x?fbclid=abc&gclid=1", "http://example.org/x"),
        ("https://example.org:443", "https://example.org/"),
        ("http://[::1]:8080/x?utm_medium=y", "http://[::1]:8080/x"),
    ],
)
def test_canonical(url: str, canonical: str) -> None:
    assert urls.canonical(url) == canonical


@given(_URLISH)
@example("http://[::1")
@example("http://x:99999")
@example("http://a\x00")
@example("http://[::1]:80")
def test_parse_raises_only_invalid_url(text: str) -> None:
    try:
        url = urls.parse(text)
    except InvalidURL:
        return
    assert url.text == text.strip()


@given(st.text(max_size=60))
def test_parse_raises_only_invalid_url_on_any_text(text: str) -> None:
    with contextlib.suppress(InvalidURL):
        urls.parse(text)


@given(_URLISH)
@example("http://h//x")
@example("http:////x")
@example("http://[::1]:8080/?a=b c&utm_x=1")
@example("http://h/?%ff=1")
def test_canonical_is_idempotent(text: str) -> None:
    try:
        once = urls.canonical(text)
    except InvalidURL:
        return
    assert urls.canonical(once) == once


@given(_URLISH, _URLISH)
def test_join_raises_only_invalid_url(base: str, ref: str) -> None:
    with contextlib.suppress(InvalidURL):
        urls.join(base, ref)
