"""``digest preview`` and ``serve``: who sees the preview, ports, bind errors and Ctrl-C.

Servers run only on 127.0.0.1; a public ``--host`` is tested only where it is
refused before anything binds. Trusted ``Host`` headers: ``test_web_host``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from digest.cli import cli
from digest.cli.base import handle_errors
from digest.cli.serving import http_url, preview_note

#: A title that rich would take as markup (a closing tag with nothing open).
TITLE = "Cyber [/b] Weekly"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The config of an init'ed working folder whose title looks like markup."""
    folder = tmp_path / "site"
    assert invoke("init", str(folder)).exit_code == 0
    path = folder / "digest.toml"
    text = path.read_text(encoding="utf-8")
    assert 'title = "Cyber Weekly"' in text
    text = text.replace('title = "Cyber Weekly"', f'title = "{TITLE}"\nsecret = "serve-needs-a-secret"', 1)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something already listens on (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- who sees the preview ---------------------------------------------------------


def test_the_preview_note_says_how_to_turn_it_on() -> None:
    assert preview_note(True) == "preview: on (--preview)"
    assert preview_note(False) == "preview: off (--preview turns it on)"


def test_http_url_brackets_ipv6() -> None:
    assert http_url("::1", 8025) == "http://[::1]:8025/"
    assert http_url("127.0.0.1", 8025) == "http://127.0.0.1:8025/"


def test_serve_help_explains_the_preview_default() -> None:
    result = invoke("serve", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--preview / --no-preview" in text
    assert "Also serve the preview pages" in text and "Default: off." in text
    assert "1<=x<=65535" in text


# -- ports -----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "preview"])
@pytest.mark.parametrize("port", ["0", "99999", "-1", "http"])
def test_a_port_out_of_range_is_a_usage_error(config: Path, command: str, port: str) -> None:
    result = invoke("--config", str(config), command, "--port", port)
    assert result.exit_code == 2
    assert "Invalid value for '--port'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["serve", "preview"])
def test_a_port_in_use_is_one_line_and_exit_2(config: Path, taken_port: int, command: str) -> None:
    result = invoke("--config", str(config), command, "--port", str(taken_port))
    assert result.exit_code == 2
    assert result.stdout == ""  # nothing claims to be serving
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{taken_port}: Address already in use\n"


def test_serve_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    assert invoke("init", str(folder)).exit_code == 0
    result = invoke("--config", str(folder / "digest.toml"), "serve", "--port", str(free_port()))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "digest.secret: not set" in result.stderr


# -- running, and Ctrl-C ---------------------------------------------------------


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(config: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m digest`` serving on a free loopback port; waits until it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(config), *args, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a shell's background jobs start with SIGINT ignored, which the child would inherit.
        preexec_fn=default_sigint,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30  # a guard against hanging, not a speed check
    while True:
        try:
            if httpx.get(f"{base}/healthz", trust_env=False).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"the server did not start: {out}\n{err}")
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Ctrl-C: SIGINT, then the exit code and output.

    uvicorn turns SIGINT into a graceful shutdown, so a server stopped this way exits 0.
    """
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, out, err


def test_preview_prints_the_title_as_text_and_stops_cleanly_on_ctrl_c(config: Path) -> None:
    proc, base = start(config, "preview")
    page = httpx.get(base + "/", trust_env=False)
    assert page.status_code == 200 and "Cyber [/b] Weekly" in page.text
    code, out, err = interrupt(proc)
    assert code == 0
    assert out.splitlines()[0] == f"preview of {TITLE} on {base}/ (Ctrl-C stops)"  # access log lines follow
    assert "Shutting down" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "status", "note"),
    [
        ((), 404, "preview: off (--preview turns it on)"),
        (("--no-preview",), 404, "preview: off (--preview turns it on)"),
        (("--preview",), 200, "preview: on (--preview)"),
    ],
)
def test_serve_says_whether_it_serves_the_preview(config: Path, flags: tuple[str, ...], status: int, note: str) -> None:
    proc, base = start(config, "serve", "--host", "127.0.0.1", *flags)
    assert httpx.get(base + "/", trust_env=False).status_code == status
    assert httpx.get(base + "/u/not-a-token", trust_env=False).status_code == 400  # unsubscribe is always on
    code, out, err = interrupt(proc)
    assert code == 0
    assert out.splitlines()[:2] == [f"serving on {base}/ (Ctrl-C stops)", note]
    assert "Shutting down" in err and "Traceback" not in err


def test_ctrl_c_in_a_command_is_one_line_and_exit_130(capsys: pytest.CaptureFixture[str]) -> None:
    @handle_errors
    def command() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stopped:
        command()
    assert stopped.value.code == 130
    captured = capsys.readouterr()
    assert captured.err == "interrupted\n" and captured.out == ""
