"""``digest demo`` and ``make demo`` as a new editor meets them: what is installed, what is printed, what it shows.

The demo runs as a real process from a folder the way ``make demo`` runs it
(``.venv/bin/digest demo``, with ``digest`` not on PATH); the preview command
it prints is then run as printed, and ``demo/out/index.html`` is looked at in
headless Chromium.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from lxml import html as lxml_html
from playwright.sync_api import Browser

from digest.demo import program, shell_path
from tests.fixtures.browser import browser  # noqa: F401  (a fixture)

ROOT = Path(__file__).parent.parent
EXE = Path(sys.executable).with_name("digest")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_without_digest_on_path(home: Path) -> dict[str, str]:
    """PATH as a fresh shell after ``make demo`` has it: the venv's bin folder is not on it."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200"}


#: The folder holding ``.venv``: where ``make demo`` runs ``.venv/bin/digest demo`` from.
CHECKOUT = EXE.parent.parent.parent


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``.venv/bin/digest demo DIR`` run from the checkout, as ``make demo`` runs it (into a temporary DIR)."""
    folder = tmp_path_factory.mktemp("demo-run") / "demo"
    ran = subprocess.run(
        [str(EXE.relative_to(CHECKOUT)), "demo", str(folder)],
        cwd=CHECKOUT,
        env=env_without_digest_on_path(folder.parent),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    return folder, ran.stdout


def test_the_demo_prints_a_preview_command_that_runs_as_printed(demo_run: tuple[Path, str]) -> None:
    folder, out = demo_run
    line = next(line for line in out.splitlines() if line.startswith("live preview:"))
    command = line.removeprefix("live preview:").strip()
    script = shlex.quote(str(EXE.relative_to(CHECKOUT)))
    assert command == f"{script} --config {shlex.quote(str(folder / 'digest.toml'))} preview --week 2018-W02"
    # Run as printed (from the same folder, digest not on PATH); only a free port is added, as
    # 8025 may be taken on a shared machine.
    port = free_port()
    proc = subprocess.Popen(
        [*shlex.split(command), "--port", str(port)],
        cwd=CHECKOUT,
        env=env_without_digest_on_path(folder.parent),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        page = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        assert page is not None and page.status_code == 200
        assert "Cyber Weekly" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def test_the_printed_paths_are_relative_to_where_make_runs(tmp_path: Path) -> None:
    # make demo runs from the checkout: "demo/digest.toml", ".venv/bin/digest".
    assert shell_path(tmp_path / "demo" / "digest.toml", tmp_path) == "demo/digest.toml"
    assert shell_path(tmp_path / ".venv" / "bin" / "digest", tmp_path) == ".venv/bin/digest"


def test_program_names_the_script_when_it_is_not_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert program(CHECKOUT) == shell_path(EXE, CHECKOUT)
    assert program(tmp_path) == shlex.quote(str(EXE))  # outside the folder: absolute
    monkeypatch.setenv("PATH", f"{EXE.parent}{os.pathsep}/usr/bin:/bin")
    assert program(tmp_path) == "digest"


def test_shell_path_quotes_what_a_shell_would_split(tmp_path: Path) -> None:
    odd = tmp_path / "my demo; rm -rf ~" / "digest.toml"
    assert shlex.split(shell_path(odd, tmp_path)) == [str(Path("my demo; rm -rf ~") / "digest.toml")]
    assert shell_path(tmp_path / "digest.toml", tmp_path) == "./digest.toml"  # never a bare name PATH would look up
    assert shlex.split(shell_path(odd, Path("/elsewhere"))) == [str(odd)]


def test_index_html_is_a_styled_page_of_the_variants(demo_run: tuple[Path, str]) -> None:
    folder, _ = demo_run
    out = folder / "out"
    page = (out / "index.html").read_text(encoding="utf-8")
    doc = lxml_html.fromstring(page)
    assert doc.xpath("//style") and "font" in doc.xpath("//style")[0].text  # inline CSS, nothing to fetch
    assert not doc.xpath("//link[@rel='stylesheet'] | //script")
    cards = doc.xpath("//li")
    assert len(cards) == 4
    for card in cards:
        hrefs = card.xpath(".//a/@href")
        assert {Path(h).suffix for h in hrefs} == {".html", ".txt", ".eml"}
        assert all((out / h).is_file() for h in hrefs)
        assert card.xpath(".//p[@class='subject']")[0].text_content().startswith("Cyber Weekly")
    assert doc.xpath("//h1")[0].text_content() == "Cyber Weekly · 2018-W02"


def test_index_html_escapes_what_the_config_and_feeds_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from digest.cli import cli

    runner = CliRunner()
    folder = tmp_path / "site"
    assert runner.invoke(cli, ["init", str(folder)]).exit_code == 0
    monkeypatch.chdir(folder)
    config = folder / "digest.toml"
    hostile = '<script>alert(1)</script> & "Weekly"'
    text = config.read_text(encoding="utf-8").replace('title = "Cyber Weekly"', f"title = '{hostile}'", 1)
    config.write_text(text, encoding="utf-8")
    assert runner.invoke(cli, ["fetch"]).exit_code == 0
    built = runner.invoke(cli, ["build", "--week", "2018-W02", "--out", "out"])
    assert built.exit_code == 0, built.output
    page = (folder / "out" / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Weekly&quot;" in page
    assert lxml_html.fromstring(page).xpath("//h1")[0].text_content().startswith(hostile)


@pytest.mark.browser
def test_index_html_in_chromium(demo_run: tuple[Path, str], browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    folder, _ = demo_run
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.goto((folder / "out" / "index.html").as_uri())
    assert page.title() == "Cyber Weekly · 2018-W02"
    # Styled: cards on a tinted page, not a bare list.
    assert page.eval_on_selector("body", "e => getComputedStyle(e).backgroundColor") == "rgb(244, 246, 249)"
    assert page.eval_on_selector("li", "e => getComputedStyle(e).listStyleType") == "none"
    assert page.eval_on_selector("main", "e => e.getBoundingClientRect().width") <= (46 + 2) * 16  # a readable measure
    shot = tmp_path / "index.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    with page.expect_navigation():
        page.click('a.themes:text-is("Cybersecurity")')
    assert re.search(r"2018-W02\.cybersecurity-[0-9a-f]+\.html$", page.url)
    assert page.title()  # the variant's own page opened
    page.close()


def test_make_demo_installs_digest_without_the_test_and_dev_tools(tmp_path: Path) -> None:
    """``make -n`` in a fresh copy: the venv is made by the target itself, and demo installs ``.`` only."""
    if shutil.which("make") is None:
        pytest.fail("make is missing")
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)

    def dry(target: str) -> list[str]:
        # Run as a top-level make even when the tests run under `make test` (no "Entering directory" lines).
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
        ran = subprocess.run(
            ["make", "--no-print-directory", "-n", target],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert ran.returncode == 0, ran.stderr
        return ran.stdout.splitlines()

    demo = dry("demo")
    assert any(re.search(r"-m venv \.venv$", line) for line in demo)
    installs = [line for line in demo if "pip install" in line and "--upgrade pip" not in line]
    assert installs == [".venv/bin/python -m pip install -q -e ."]
    assert demo[-1] == ".venv/bin/digest demo"
    for target in ("test", "lint", "venv"):
        lines = dry(target)
        assert any(re.search(r"-m venv \.venv$", line) for line in lines), target
        assert any("pip install -q -e '.[test,dev]'" in line for line in lines), target
