"""Edition files applied everywhere: ``digest build``, ``send`` (over a real SMTP server) and the preview.

The folder is the scaffold's sample (tests/data/send/workspace.py), fetched
from its bundled local sources; its week 2018-W02 has AI, Cybersecurity,
Internet governance and Digital economy entries. Subscriber r001 chose
Cybersecurity only, r002 AI only, r004 a theme with no entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result
from playwright.sync_api import Browser, Route, expect

from digest import editions, pipeline
from digest.backend import LocalBackend
from digest.cli import cli
from digest.codec import issue_from_json, issue_to_json
from digest.models import Editorial, IsoWeek
from digest.web import create_app
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer
from tests.fixtures.web_server import running

UPDATE_SCREENSHOTS = os.environ.get("DIGEST_UPDATE_SCREENSHOTS") == "1"
DOCS = Path(__file__).resolve().parent.parent / "docs"

WEEK = "2018-W02"
RANSOMWARE = "Ransomware gangs shift to cloud backups"
SPUTNIK = 'Machine learning & the "Sputnik moment" debate'
CHIPS = "China's AI chip start-ups raise record funding"
CHINA_US = "The key to which country currently takes the lead"
WHOIS = "ICANN's WHOIS dilemma ahead of GDPR"
MELTDOWN_ID = "Cyber Policy Notes:guid:cyber-policy-2018-0110-meltdown"
MELTDOWN_EDITED = "Meltdown patches: the bill arrives"
SUBJECT = "Ransomware goes after backups"
HEADLINE = "The week backups stopped being safe"
PREHEADER = "Plus: what Meltdown patches cost"
#: Pinned by link, tracking parameters left off (the feed's link has utm_source=rss): the canonical link matches.
EDITION = f"""+++
subject = "{SUBJECT}"
headline = "{HEADLINE}"
preheader = "{PREHEADER}"
pin = ["https://cyber-policy.example.org/2018/01/ransomware-cloud-backups", "https://ai-watch.example.org/2018/01/13/sputnik"]
skip = ["Cyber Policy Notes:guid:cyber-policy-2018-0111-whois"]
order = {{ "AI & tech competition" = ["China-US Focus: Cyber:sha256:78ded043867c4ad311551acfe7bf4097"] }}
[edit."{MELTDOWN_ID}"]
title = "{MELTDOWN_EDITED}"
+++
This week's **note**: attackers now go for the backups first, so the copy you
keep offline is the one that saves you. Read the [pinned story](https://cyber-policy.example.org/x)
before anything else.

<script>alert("raw HTML stays text")</script>
"""
NOTE_WORDS = "attackers now go for the backups first"


def invoke(path: Path, *args: str) -> Result:
    return CliRunner(env=ws.ENV).invoke(cli, ["--config", str(path), *args])


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def flat(text: str) -> str:
    return " ".join(text.split())


def write_edition(path: Path, text: str, key: str = WEEK) -> Path:
    folder = path.parent / "editions"
    folder.mkdir(exist_ok=True)
    file = folder / f"{key}.md"
    file.write_text(text, encoding="utf-8")
    return file


@pytest.fixture
def folder(tmp_path: Path, smtp_server: SmtpServer) -> Path:
    """A fetched sample folder sending to the loopback SMTP server; returns its config path."""
    path = ws.make_folder(tmp_path, ws.rows(6), port=smtp_server.port)
    ws.fetch(path)
    return path


def built_files(path: Path, out: Path) -> dict[str, dict[str, str]]:
    """``digest build`` into ``out``: per variant key, its html, txt and eml text."""
    result = invoke(path, "build", "--week", WEEK, "--out", str(out))
    assert result.exit_code == 0, result.output
    found: dict[str, dict[str, str]] = {}
    for file in out.glob(f"{WEEK}.*.*"):
        _, variant, suffix = file.name.split(".")
        found.setdefault(variant, {})[suffix] = file.read_text(encoding="utf-8")
    return found


def test_build_applies_the_edition_to_every_variant(folder: Path) -> None:
    plain = built_files(folder, folder.parent / "plain")
    write_edition(folder, EDITION)
    files = built_files(folder, folder.parent / "out")
    # Top stories are in every variant, and do not rename the variants of a theme choice (the skip
    # empties Internet governance, so that reader's variant is Digital economy alone now).
    assert set(plain) - {"digital-economy-internet-governance-ae2f32df"} <= set(files)
    assert any(v.startswith("digital-economy-") and "internet" not in v for v in files)
    assert any(v.startswith("top-stories-") for v in files)  # r004: no theme with entries, Top stories still
    everyone = files["all"]
    html, text = everyone["html"], everyone["txt"]

    # The note opens the issue: after the greeting, before Top stories; Markdown rendered, raw HTML not.
    assert "<strong>note</strong>" in html
    assert '<a href="https://cyber-policy.example.org/x"' in html
    assert "<script" not in html and "&lt;script&gt;" in html
    assert html.index("Hello") < html.index(NOTE_WORDS) < html.index("Top stories") < html.index(RANSOMWARE)
    assert text.index("Hello") < text.index(NOTE_WORDS) < text.index("TOP STORIES")
    note_lines = text[text.index("This week's") : text.index("In this issue")].splitlines()
    assert len(note_lines) > 3 and max(len(line) for line in note_lines) <= 72
    assert "pinned story <https://cyber-policy.example.org/x>" in flat(text)

    # Subject, headline (the lede line) and preheader replaced.
    assert re.search(rf"(?m)^Subject: {SUBJECT}$", everyone["eml"])
    assert f"<title>{SUBJECT}</title>" in html
    assert HEADLINE in html and HEADLINE in text
    assert "grouped by theme" not in html and "grouped by theme" not in text
    assert PREHEADER in html and "new pieces on" not in html
    assert "grouped by theme" in plain["all"]["html"] and "new pieces on" in plain["all"]["html"]

    # Pins first, in the edition's order; they leave their theme (shown once).
    page = unescape(html)
    assert page.index("Top stories") < page.index(RANSOMWARE) < page.index(SPUTNIK) < page.index(MELTDOWN_EDITED)
    assert page.index(SPUTNIK) < page.index(CHINA_US)
    assert flat(page).count(RANSOMWARE) == 1 and flat(page).count(SPUTNIK) == 1
    # order: the China-US Focus entry leads the AI section.
    assert text.index(CHINA_US) < text.index(CHIPS)
    assert plain["all"]["txt"].index(CHIPS) < plain["all"]["txt"].index(CHINA_US)
    # edit: the new title, in HTML and text.
    assert MELTDOWN_EDITED in html and MELTDOWN_EDITED in flat(text)
    assert "Meltdown and Spectre: what patching costs" not in html

    # skip: gone from every variant and every part.
    for variant, parts in files.items():
        for suffix, body in parts.items():
            assert WHOIS not in flat(body).replace("=\n", ""), (variant, suffix)
    assert any(WHOIS in flat(p["txt"]) for p in plain.values())

    # A subscriber of another theme (AI only) gets the pinned Cybersecurity story first.
    ai = next(p for v, p in files.items() if v.startswith("ai-tech-competition-") and "cyber" not in v)
    assert ai["html"].index("Top stories") < ai["html"].index(RANSOMWARE) < ai["html"].index(CHINA_US)
    assert MELTDOWN_EDITED not in ai["html"]  # the rest of Cybersecurity stays with its theme
    cyber = next(p for v, p in files.items() if v.startswith("cybersecurity-"))
    assert SPUTNIK in unescape(cyber["html"]) and CHIPS not in unescape(cyber["html"])


def test_build_of_a_theme_subscriber_sees_top_stories_even_without_their_theme(folder: Path) -> None:
    # Only the pinned AI story: a Cybersecurity-only reader gets it, under Top stories.
    write_edition(folder, '+++\npin = ["https://ai-watch.example.org/2018/01/13/sputnik"]\n+++\n')
    files = built_files(folder, folder.parent / "out")
    cyber = next(p for v, p in files.items() if v.startswith("cybersecurity-"))
    assert cyber["txt"].index("TOP STORIES (1)") < cyber["txt"].index(SPUTNIK) < cyber["txt"].index("CYBERSECURITY")
    assert "In this issue" in cyber["txt"] and "- Top stories (1)" in cyber["txt"]
    # No note, no subject or headline: the issue reads as without an edition there.
    assert "grouped by theme" in cyber["html"]
    assert ws.parse(cyber["eml"].encode())["Subject"] == "Cyber Weekly — Week 2 · 8–14 January 2018"


@pytest.mark.parametrize(
    ("front", "named"),
    [
        ('pin = ["no-such-entry"]', "pin: no entry 'no-such-entry' in issue 2018-W02"),
        ('skip = ["https://example.org/never"]', "skip: no entry 'https://example.org/never'"),
        ('order = { "Cybersecurity" = ["ghost"] }', "order.Cybersecurity: no entry 'ghost'"),
        ('order = { "Astrology" = [] }', "order: no section 'Astrology'"),
        ('[edit."ghost"]\ntitle = "x"', "edit: no entry 'ghost'"),
        ('subjekt = "typo"', "subjekt: unknown key"),
        ('pin = "not a list"', "pin: must be a list"),
    ],
)
def test_a_bad_edition_is_one_line_exit_2(folder: Path, front: str, named: str) -> None:
    file = write_edition(folder, f"+++\n{front}\n+++\nA note.\n")
    for args in (("build", "--week", WEEK, "--out", str(folder.parent / "out")), ("send", "--week", WEEK)):
        result = invoke(folder, *args)
        assert result.exit_code == 2, result.output
        line = one_line(result.output)
        assert str(file) in line and named in line
    assert not (folder.parent / "out").exists()


def test_send_over_smtp_carries_the_edition(folder: Path, smtp_server: SmtpServer) -> None:
    write_edition(folder, EDITION)
    done = ws.run_cli(folder, "send", "--week", WEEK)
    assert done.returncode == 0, done.stderr + done.stdout
    got = {rcpt: m for m in smtp_server.messages for rcpt in m.rcpt_tos}
    assert set(got) == {f"r00{i}@example.org" for i in range(6)}  # r004 (no theme with entries) gets Top stories
    for rcpt, received in got.items():
        msg = ws.parse(received.data)
        assert msg["Subject"] == SUBJECT, rcpt
        body = ws.text_body(msg)
        assert NOTE_WORDS in flat(body) and body.index("TOP STORIES") < body.index("Links")
        assert WHOIS not in flat(body)
        html = msg.get_body(("html",))
        assert html is not None and "<strong>note</strong>" in html.get_content()
    space = ws.text_body(ws.parse(got["r004@example.org"].data))
    assert RANSOMWARE in flat(space) and "CYBERSECURITY (" not in space


def test_run_sends_the_edition_of_the_issue_that_is_due(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = ws.make_folder(tmp_path, ws.rows(2), port=smtp_server.port)
    config = ws.load(path)
    write_edition(path, EDITION)
    with pipeline.open_store(config) as store:
        # RUN_NOW is in 2018-W03: the issue due is 2018-W02's, fetched by the run itself.
        report = pipeline.run(config, store, clock=ws.fixed_clock())
    assert report.exit_code == 0
    assert {m.rcpt_tos for m in smtp_server.messages} == {("r000@example.org",), ("r001@example.org",)}
    for received in smtp_server.messages:
        msg = ws.parse(received.data)
        assert msg["Subject"] == SUBJECT and NOTE_WORDS in flat(ws.text_body(msg))


def test_an_edition_changed_after_the_freeze_changes_nothing_sent(tmp_path: Path, smtp_server: SmtpServer) -> None:
    people = ws.rows(3)
    path = ws.make_folder(tmp_path, people, port=smtp_server.port)
    config = ws.load(path)
    file = write_edition(path, EDITION)
    applied = hashlib.sha256(file.read_bytes()).hexdigest()
    clock = ws.fixed_clock()
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, clock())
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=clock)
        frozen = store.frozen_issue(WEEK)
    assert frozen is not None
    editorial = issue_from_json(frozen.payload).editorial
    assert editorial is not None and editorial.sha256 == applied and editorial.subject == SUBJECT

    backend = LocalBackend(path)
    assert not any("edition changed" in w for w in backend.preview(WEEK).warnings)
    file.write_text(EDITION.replace(SUBJECT, "A later subject").replace(NOTE_WORDS, "later words"), encoding="utf-8")
    # A reader who joins after the freeze gets the frozen issue, not the edited edition.
    ws.write_list(path.parent / "subscribers" / "subscribers.csv", [*people, ws.Row("late@example.org", "Late", "")])
    with pipeline.open_store(config) as store:
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=clock)
        again = store.frozen_issue(WEEK)
    assert again is not None and again.payload == frozen.payload
    (late,) = smtp_server.received("late@example.org")
    msg = ws.parse(late.data)
    assert msg["Subject"] == SUBJECT and NOTE_WORDS in flat(ws.text_body(msg))
    assert "later words" not in flat(ws.text_body(msg))

    preview = backend.preview(WEEK)
    notice = [w for w in preview.warnings if "edition changed" in w]
    assert len(notice) == 1 and str(file) in notice[0]
    assert "edition changed after the issue was frozen at 2018-01-16" in notice[0]
    assert notice[0].endswith("the frozen issue is what goes out")

    # Even a broken edition does not stop the frozen issue: sending reads the freeze, not the file.
    file.write_text('+++\npin = ["gone"]\n+++\n', encoding="utf-8")
    resumed = invoke(path, "send", "--week", WEEK)
    assert resumed.exit_code == 0, resumed.output
    broken = backend.preview(WEEK)
    assert broken.error is not None and "pin: no entry 'gone'" in broken.error
    assert any("edition changed after the issue was frozen" in w for w in broken.warnings)


def test_preview_shows_the_edition_live_and_its_errors_in_place(folder: Path) -> None:
    backend = LocalBackend(folder)
    before = backend.fingerprint()
    plain = backend.preview(WEEK)
    assert plain.error is None and plain.variants[0].subject != SUBJECT

    file = write_edition(folder, EDITION)
    with_edition = backend.fingerprint()
    assert with_edition != before
    shown = backend.preview(WEEK)
    assert shown.error is None
    first = shown.variants[0]
    assert first.key == "all" and first.subject == SUBJECT
    assert "<strong>note</strong>" in first.html and NOTE_WORDS in flat(first.text)

    file.write_text(EDITION.replace("ransomware-cloud-backups", "ransomware-cloud-backupz"), encoding="utf-8")
    assert backend.fingerprint() != with_edition
    broken = backend.preview(WEEK)
    assert broken.variants == ()
    assert broken.error is not None and "\n" not in broken.error
    assert str(file) in broken.error and "pin: no entry" in broken.error and "backupz" in broken.error
    assert WEEK in broken.weeks  # the week switcher stays

    file.unlink()
    assert backend.fingerprint() == before


def test_editions_folder_is_configurable(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = ws.make_folder(tmp_path, ws.rows(2), port=smtp_server.port)
    text = path.read_text(encoding="utf-8").replace("[digest]\n", '[digest]\neditions = "shaping"\n', 1)
    path.write_text(text, encoding="utf-8")
    ws.fetch(path)
    config = ws.load(path)
    assert pipeline.editions_dir(config) == tmp_path / "shaping"
    (tmp_path / "shaping").mkdir()
    (tmp_path / "shaping" / f"{WEEK}.md").write_text(f'+++\nsubject = "{SUBJECT}"\n+++\n', encoding="utf-8")
    write_edition(path, '+++\nsubject = "from the default folder, unread"\n+++\n')
    files = built_files(path, tmp_path / "out")
    assert re.search(rf"(?m)^Subject: {SUBJECT}$", files["all"]["eml"])
    made = invoke(path, "edit", "--week", "2018-W03")
    assert made.exit_code == 0, made.output
    assert one_line(made.output) == str(tmp_path / "shaping" / "2018-W03.md")


def test_frozen_json_keeps_its_bytes_without_an_edition_and_carries_one_with_it(folder: Path) -> None:
    config = ws.load(folder)
    with pipeline.open_store(config) as store:
        issue = pipeline.make_issue(config, store, (IsoWeek(2018, 2),))
    payload = issue_to_json(issue)
    assert "editorial" not in json.loads(payload)  # frozen issues from before editions read and write the same
    assert issue_to_json(issue_from_json(payload)) == payload

    write_edition(folder, EDITION)
    with pipeline.open_store(config) as store:
        shaped = pipeline.make_issue(config, store, (IsoWeek(2018, 2),))
    assert isinstance(shaped.editorial, Editorial)
    again = issue_from_json(issue_to_json(shaped))
    assert again == shaped
    assert "<script" not in again.editorial.note_html if again.editorial else False
    # A hand-edited frozen note is sanitised again when rendered.
    data = json.loads(issue_to_json(shaped))
    data["editorial"]["note_html"] = '<p onclick="x()">hi</p><script>alert(1)</script>'
    tampered = issue_from_json(json.dumps(data))
    rendered = pipeline.renderer_for(config).render_variant(tampered, None)
    assert "<script" not in rendered.html and "onclick" not in rendered.html and ">hi</p>" in rendered.html


def test_edit_plans_without_the_edition_so_its_file_lists_every_entry(folder: Path) -> None:
    write_edition(folder, '+++\nskip = ["Cyber Policy Notes:guid:cyber-policy-2018-0111-whois"]\n+++\n')
    config = ws.load(folder)
    with pipeline.open_store(config) as store:
        shaped = pipeline.make_issue(config, store, (IsoWeek(2018, 2),))
        whole = pipeline.make_issue(config, store, (IsoWeek(2018, 2),), edition=False)
    assert len(whole.entries) == len(shaped.entries) + 1 == 7
    assert editions.template_for(whole).count('#   "') == 7
    # The skipped entry is recorded with the issue at its freeze: it is not carried into the next one.
    with pipeline.open_store(config) as store:
        planned = pipeline.plan_issue(config, store, (IsoWeek(2018, 2),))
    recorded = {r.entry_id for r in planned.records()}
    assert "Cyber Policy Notes:guid:cyber-policy-2018-0111-whois" in recorded


# -- in the browser (last: Playwright's sync API keeps an event loop on this thread) -------------


@pytest.mark.browser
def test_preview_with_an_edition_in_chromium(tmp_path: Path, smtp_server: SmtpServer, browser: Browser) -> None:
    path = ws.make_folder(tmp_path, ws.rows(6), port=smtp_server.port)
    with ThreadPoolExecutor(max_workers=1) as pool:  # the fetcher runs its own event loop
        pool.submit(ws.fetch, path).result()
    file = write_edition(path, EDITION)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    off_loopback: list[str] = []

    def guard(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "about:")):
            route.continue_()
        else:
            off_loopback.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        with running(create_app(LocalBackend(path), title="Cyber Weekly")) as base:
            page.goto(f"{base}/?week={WEEK}")
            mail = page.frame_locator("#mail")
            expect(mail.locator(".note strong")).to_have_text("note")
            expect(mail.get_by_text(HEADLINE, exact=True)).to_be_visible()
            expect(mail.get_by_text(RANSOMWARE, exact=True)).to_be_visible()
            expect(page.locator(".meta .subject")).to_have_text(SUBJECT)
            expect(page.locator("#status")).to_have_text("Live: reloads on changes", timeout=15_000)
            shot = tmp_path / "preview-edition.png"
            page.screenshot(path=str(shot))
            data = shot.read_bytes()
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 30_000
            if UPDATE_SCREENSHOTS:
                DOCS.mkdir(exist_ok=True)
                (DOCS / "preview-edition.png").write_bytes(data)

            # Live: a broken edition shows its one line in place of the message, a fixed one the issue again.
            file.write_text(EDITION.replace('"Cyber Policy Notes:guid', '"Ghost Notes:guid', 1), encoding="utf-8")
            expect(page.locator("body")).to_contain_text("skip: no entry 'Ghost Notes", timeout=15_000)
            file.write_text(EDITION.replace(SUBJECT, "Backups, again"), encoding="utf-8")
            expect(page.locator(".meta .subject")).to_have_text("Backups, again", timeout=15_000)
    finally:
        context.close()
    assert problems == [] and off_loopback == []
