"""The web app over real HTTP: a uvicorn server on 127.0.0.1, port 0, in a thread.

The backend is a small in-test implementation of the ``Backend`` seam that
records what it was asked to do.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from digest.errors import ConfigError, StoreError, SubscriberError
from digest.web import Preview, PreviewSubscriber, PreviewVariant, check_listen, create_app
from digest.web.forms import form_fields, is_one_click
from digest.web.pages import mask_email
from tests.fixtures.web_server import running

TITLE = "Cyber Weekly"


def message(week: str, key: str, label: str, words: str) -> PreviewVariant:
    subject = f"{TITLE} {week}: {label}"
    html = (
        '<!doctype html><html><body style="font-family:sans-serif">'
        f'<h1 style="color:#123">{TITLE} {week}</h1>'
        f"<p>{label}: {words}</p></body></html>"
    )
    text = f"{TITLE} {week}\n\n{label}: {words}\n"
    eml = (
        f"From: {TITLE} <digest@example.org>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}"
    ).encode()
    return PreviewVariant(key=key, label=label, subject=subject, html=html, text=text, eml=eml)


def sample_preview(week: str, *, tag: str = "") -> Preview:
    return Preview(
        issue_key=week,
        weeks=("2018-W02", "2018-W01"),
        variants=(
            message(week, "all", "All themes", f"quantum sandworms {tag}".strip()),
            message(week, "ai", "AI", f"neural lighthouses {tag}".strip()),
        ),
        subscribers=(
            PreviewSubscriber("ann@example.org", "Ann", "all"),
            PreviewSubscriber("bob@example.org", "Bob", "ai"),
            PreviewSubscriber("cy@example.org", "", None),
        ),
        warnings=("source 'blog' failed: HTTP 503",),
    )


class FakeBackend:
    """The seam, implemented over dicts; records every unsubscribe call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tokens = {"tok-ann.sig": "ann@example.org", "tok-bob.sig": "bob@example.org"}
        self.unsubscribed: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.fp = "fp-1"
        self.fp_error = ""
        self.previews: dict[str | None, Preview] = {
            None: sample_preview("2018-W02"),
            "2018-W02": sample_preview("2018-W02"),
            "2018-W01": sample_preview("2018-W01"),
        }
        self.sent = {("2018-W01", "all"): "<html><body><p>Sent issue W01</p></body></html>"}

    def preview(self, week: str | None) -> Preview:
        with self._lock:
            try:
                return self.previews[week]
            except KeyError:
                raise ConfigError(f"no issue for week {week}") from None

    def fingerprint(self) -> str:
        with self._lock:
            if self.fp_error:
                raise StoreError(self.fp_error)
            return self.fp

    def check_token(self, token: str) -> str:
        try:
            return self.tokens[token]
        except KeyError:
            raise SubscriberError("bad unsubscribe token") from None

    def unsubscribe(self, token: str, how: str) -> str:
        address = self.check_token(token)
        with self._lock:
            self.calls.append((token, how))
            self.unsubscribed.setdefault(address, how)
        return address

    def web_version(self, issue_key: str, variant: str) -> str | None:
        return self.sent.get((issue_key, variant))

    def change(self, preview: Preview, fingerprint: str) -> None:
        """An edit: the next issue changes and so does the fingerprint."""
        with self._lock:
            self.previews[None] = preview
            self.previews[preview.issue_key] = preview
            self.fp = fingerprint


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def client(backend: FakeBackend) -> Iterator[httpx.Client]:
    with (
        running(create_app(backend, title=TITLE)) as url,
        httpx.Client(base_url=url, trust_env=False, follow_redirects=False) as http,
    ):
        yield http


@pytest.fixture
def public_client(backend: FakeBackend) -> Iterator[httpx.Client]:
    with (
        running(create_app(backend, title=TITLE, enable_preview=False)) as url,
        httpx.Client(base_url=url, trust_env=False, follow_redirects=False) as http,
    ):
        yield http


def assert_security_headers(r: httpx.Response) -> None:
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'self'" in r.headers["content-security-policy"]


# --- unsubscribe ---------------------------------------------------------


def test_get_unsubscribe_shows_a_form_and_changes_nothing(client: httpx.Client, backend: FakeBackend) -> None:
    r = client.get("/u/tok-ann.sig")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "a***@example.org" in r.text
    assert "ann@example.org" not in r.text
    assert '<form class="confirm" method="post">' in r.text
    assert r.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert_security_headers(r)
    assert client.head("/u/tok-ann.sig").status_code == 200
    assert backend.calls == []
    assert backend.unsubscribed == {}


def test_one_click_form_encoded_unsubscribes_at_once(client: httpx.Client, backend: FakeBackend) -> None:
    r = client.post("/u/tok-ann.sig", data={"List-Unsubscribe": "One-Click"})
    assert r.headers["content-type"].startswith("text/html")
    assert r.status_code == 200
    assert "location" not in r.headers
    assert "set-cookie" not in r.headers
    assert r.headers["cache-control"] == "no-store"
    assert "unsubscribed" in r.text
    assert "a***@example.org" in r.text
    assert backend.unsubscribed == {"ann@example.org": "one-click"}
    assert_security_headers(r)

    again = client.post("/u/tok-ann.sig", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert "set-cookie" not in again.headers
    assert backend.calls == [("tok-ann.sig", "one-click")] * 2
    assert backend.unsubscribed == {"ann@example.org": "one-click"}


def test_one_click_multipart_unsubscribes(client: httpx.Client, backend: FakeBackend) -> None:
    r = client.post("/u/tok-bob.sig", files={"List-Unsubscribe": (None, "One-Click")})
    assert r.request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert r.status_code == 200
    assert "location" not in r.headers
    assert "set-cookie" not in r.headers
    assert backend.calls == [("tok-bob.sig", "one-click")]
    assert client.post("/u/tok-bob.sig", files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200


def test_confirmation_form_post_unsubscribes_as_form(client: httpx.Client, backend: FakeBackend) -> None:
    r = client.post("/u/tok-ann.sig", data={"confirm": "yes"})
    assert r.status_code == 200
    assert backend.unsubscribed == {"ann@example.org": "form"}


def test_tampered_token_is_a_400_and_changes_nothing(client: httpx.Client, backend: FakeBackend) -> None:
    for r in (
        client.get("/u/tok-ann.sig-tampered"),
        client.post("/u/tok-ann.sig-tampered", data={"List-Unsubscribe": "One-Click"}),
        client.get("/u/" + "x" * 5000),
    ):
        assert r.status_code == 400
        assert "not valid" in r.text
        assert r.headers["cache-control"] == "no-store"
    assert backend.calls == []


def test_oversized_body_is_refused(client: httpx.Client, backend: FakeBackend) -> None:
    r = client.post("/u/tok-ann.sig", content=b"List-Unsubscribe=One-Click&" + b"x" * 100_000)
    assert r.status_code == 413
    assert backend.calls == []


def test_unsubscribe_works_without_the_preview(public_client: httpx.Client, backend: FakeBackend) -> None:
    assert public_client.get("/u/tok-ann.sig").status_code == 200
    assert public_client.post("/u/tok-ann.sig", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert backend.unsubscribed == {"ann@example.org": "one-click"}
    assert public_client.get("/_static/site.css").status_code == 200


# --- preview -------------------------------------------------------------


def test_preview_page_shows_the_next_issue(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert_security_headers(r)
    page = r.text
    assert '<iframe id="mail"' in page
    assert 'src="/preview/next/all.html"' in page
    assert "Cyber Weekly 2018-W02: All themes" in page  # the subject
    assert "source &#x27;blog&#x27; failed: HTTP 503" in page  # the warning
    assert "Variant: All themes" in page
    assert "Bob &lt;bob@example.org&gt; – AI" in page
    assert ">cy@example.org – no message<" in page
    assert 'data-fingerprint="fp-1"' in page


def test_preview_page_follows_the_switcher(client: httpx.Client) -> None:
    page = client.get("/", params={"week": "2018-W01", "who": "sub:bob@example.org", "view": "text"}).text
    assert 'src="/preview/2018-W01/ai.txt"' in page
    assert "Cyber Weekly 2018-W01: AI" in page
    assert '<option value="2018-W01" selected>' in page
    # The pressed view button comes after the hidden field; the last one wins.
    page = client.get("/?view=html&view=source").text
    assert 'src="/preview/next/all.eml?inline=1"' in page


def test_subscriber_without_a_message_is_explained(client: httpx.Client) -> None:
    page = client.get("/", params={"who": "sub:cy@example.org"}).text
    assert "cy@example.org gets no message" in page
    assert "<iframe" not in page


def test_build_error_is_shown_instead_of_the_message(client: httpx.Client, backend: FakeBackend) -> None:
    broken = Preview("2018-W02", ("2018-W02",), (), (), (), "digest.html:3: unexpected '}'")
    backend.change(broken, "fp-2")
    page = client.get("/").text
    assert "The issue could not be built." in page
    assert "digest.html:3: unexpected &#x27;}&#x27;" in page
    assert "<iframe" not in page
    failed = client.get("/", params={"week": "1999-W01"}).text  # the backend raises for this week
    assert "no issue for week 1999-W01" in failed


def test_message_routes_serve_the_exact_parts(client: httpx.Client, backend: FakeBackend) -> None:
    variant = backend.previews[None].variants[0]
    html = client.get("/preview/next/all.html")
    assert html.status_code == 200
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.text == variant.html
    csp = html.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert_security_headers(html)

    text = client.get("/preview/next/all.txt")
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.text == variant.text

    eml = client.get("/preview/next/all.eml")
    assert eml.headers["content-type"] == "message/rfc822"
    assert eml.content == variant.eml
    assert eml.headers["content-disposition"] == 'attachment; filename="2018-W02-all.eml"'
    source = client.get("/preview/next/all.eml?inline=1")
    assert source.headers["content-type"] == "text/plain; charset=utf-8"
    assert source.text.startswith("From: Cyber Weekly")

    older = client.get("/preview/2018-W01/ai.html")
    assert older.status_code == 200 and "2018-W01" in older.text and "neural lighthouses" in older.text


@pytest.mark.parametrize(
    "path",
    ["/preview/next/nope.html", "/preview/next/all.pdf", "/preview/1999-W01/all.html", "/preview/next/all"],
)
def test_unknown_messages_are_404(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_fingerprint_endpoint_follows_the_backend(client: httpx.Client, backend: FakeBackend) -> None:
    r = client.get("/_fingerprint")
    assert r.status_code == 200 and r.text == "fp-1"
    assert r.headers["cache-control"] == "no-store"
    backend.change(sample_preview("2018-W02", tag="edited"), "fp-2")
    assert client.get("/_fingerprint").text == "fp-2"
    assert "quantum sandworms edited" in client.get("/preview/next/all.html").text
    backend.fp_error = "database is locked"
    down = client.get("/_fingerprint")
    assert down.status_code == 503 and down.text == "database is locked"


@pytest.mark.parametrize(
    "path", ["/", "/preview/next/all.html", "/preview/next/all.txt", "/_fingerprint", "/_static/preview.js"]
)
def test_disabled_preview_is_404(public_client: httpx.Client, path: str) -> None:
    assert public_client.get(path).status_code == 404


def test_static_assets(client: httpx.Client) -> None:
    js = client.get("/_static/preview.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert "/_fingerprint" in js.text
    assert client.get("/_static/site.css").headers["content-type"].startswith("text/css")
    assert client.get("/_static/other.js").status_code == 404


# --- web version and health ----------------------------------------------


def test_web_version(client: httpx.Client) -> None:
    r = client.get("/issues/2018-W01/all.html")
    assert r.status_code == 200
    assert r.text == "<html><body><p>Sent issue W01</p></body></html>"
    assert "script-src" not in r.headers["content-security-policy"]
    assert client.get("/issues/2018-W01/ai.html").status_code == 404
    assert client.get("/issues/2018-W01/all.txt").status_code == 404


def test_unsubscribe_help_is_public_and_explains(public_client: httpx.Client) -> None:
    r = public_client.get("/unsubscribe-help")
    assert r.status_code == 200
    assert "How to unsubscribe from" in r.text and "List-Unsubscribe" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert public_client.post("/unsubscribe-help").status_code == 405


def test_healthz(public_client: httpx.Client) -> None:
    r = public_client.get("/healthz")
    assert r.status_code == 200 and r.text == "ok"


# --- small parts ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "masked"),
    [("ann@example.org", "a***@example.org"), ("a@b.c", "a***@b.c"), ("odd", "o***")],
)
def test_mask_email(address: str, masked: str) -> None:
    assert mask_email(address) == masked


def test_form_fields() -> None:
    body = b'--b0\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b0--\r\n'
    assert is_one_click(form_fields('multipart/form-data; boundary="b0"', body))
    assert is_one_click(form_fields("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click"))
    assert not is_one_click(form_fields("application/x-www-form-urlencoded", b"confirm=yes"))
    assert form_fields("multipart/form-data", b"no boundary at all") == {}
    assert form_fields("text/plain", b"List-Unsubscribe=One-Click") == {}


# --- listening ------------------------------------------------------------


def test_check_listen_refuses_a_port_in_use_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            check_listen("127.0.0.1", port)
        message = str(caught.value)
        assert message.startswith(f"cannot listen on 127.0.0.1:{port}: ")
        assert "in use" in message and "\n" not in message
        assert caught.value.exit_code == 2
    check_listen("127.0.0.1", port)  # free again once the listener is gone
