"""The ``digest`` command group, its shared options and error handling.

Every command loads the config once, calls ``pipeline`` and prints a report.
A ``DigestError`` becomes one line on stderr and exit code 1 (2 for bad
usage or config), never a traceback; Ctrl-C becomes "interrupted" and 130.

Global ``-v/--verbose`` shows INFO logs and digest's own DEBUG ones (``-vv``:
every DEBUG log); ``-q/--quiet`` prints errors only (no report, no
warnings; ``--json`` documents are still written).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import logging
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.text import Text

from digest.config import Config, check_sending, find_config, load_config
from digest.errors import ConfigError, DigestError
from digest.models import IsoWeek


class _LazyModule(types.ModuleType):
    """A module imported on first attribute use.

    The pipeline pulls in every stage (httpx, feedparser, lxml, SQLAlchemy,
    premailer: about a second); ``digest --help`` and usage errors need none
    of it.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self.__name__), name)


if TYPE_CHECKING:
    from digest import pipeline as pipeline
else:
    pipeline = _LazyModule("digest.pipeline")

P = ParamSpec("P")
R = TypeVar("R")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
console = Console(highlight=False, soft_wrap=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: The shell's exit status for a command stopped by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a DigestError into one line on stderr and its exit code; Ctrl-C into "interrupted", 130."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except DigestError as exc:
            err_console.print(Text.assemble(("error:", "bold red"), " ", str(exc)), soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            # Python turns SIGINT into KeyboardInterrupt wherever the command is;
            # the user asked for the stop, so no traceback. (The web servers
            # take SIGINT as a graceful stop of their own and exit 0.)
            err_console.print("interrupted", markup=False)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


class StopSignals:
    """SIGTERM and SIGINT as a request to stop, for the commands that send.

    Inside ``with StopSignals() as stop:`` the first SIGTERM (systemd,
    ``docker stop``, ``timeout``) or Ctrl-C sets ``stop.event`` instead of
    killing the process, so the send finishes and records the transactions
    in flight and the command prints its summary; it then exits with
    ``stop.exit_code`` (143, or 130 for Ctrl-C). A second Ctrl-C interrupts
    at once.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._request)
        return self

    def _request(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    def report(self) -> None:
        """The one line said after the summary of a stopped command."""
        name = signal.Signals(self.signum or signal.SIGINT).name
        err_console.print(
            f"interrupted ({name}): the messages in flight were sent and recorded; the rest are due for the next run",
            markup=False,
        )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _UtcFormatter(logging.Formatter):
    """Timestamps in ISO 8601 UTC (``2026-12-01T08:00:00.123Z``), whatever the host's zone."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class Logging:
    """The log handler of one command: levels from ``-v``/``-q``, removed again when the command ends."""

    def __init__(self, verbose: int, quiet: bool) -> None:
        self.verbose, self.quiet = verbose, quiet
        self.handler = _StderrHandler()
        root, own = logging.getLogger(), logging.getLogger("digest")
        self._saved = (root.level, own.level)
        root.addHandler(self.handler)
        self.apply()

    def apply(self, default: int = logging.WARNING, timestamps: bool = False) -> None:
        """Levels: -q ERROR; -vv DEBUG; -v INFO (digest's own DEBUG); else WARNING (digest's own ``default``)."""
        if self.quiet:
            level, own = logging.ERROR, logging.NOTSET
        elif self.verbose >= 2:
            level, own = logging.DEBUG, logging.NOTSET
        elif self.verbose == 1:
            level, own = logging.INFO, logging.DEBUG
        else:
            level, own = logging.WARNING, default if default < logging.WARNING else logging.NOTSET
        # A record is checked against its own logger's level only, then handed to every handler up
        # the tree: the root level filters third-party loggers, the "digest" level digest's own.
        logging.getLogger().setLevel(level)
        logging.getLogger("digest").setLevel(own)
        fmt = "%(levelname)s %(name)s: %(message)s" if timestamps or self.verbose else "%(levelname)s: %(message)s"
        formatter = _UtcFormatter("%(asctime)s " + fmt) if timestamps else logging.Formatter(fmt)
        self.handler.setFormatter(formatter)

    def close(self) -> None:
        root, own = logging.getLogger(), logging.getLogger("digest")
        root.removeHandler(self.handler)
        root.setLevel(self._saved[0])
        own.setLevel(self._saved[1])


#: Whether ``-q`` was given: warnings are not printed.
_quiet = [False]


def warn(message: str) -> None:
    """A ``warning:`` line on stderr, unless ``-q``. The text is printed as it is, never as markup."""
    if not _quiet[0]:
        err_console.print(Text.assemble(("warning:", "yellow"), " ", message), soft_wrap=True)


class Context:
    """What the group hands its commands: the config path, loaded lazily, and the logging set-up."""

    def __init__(self, config_path: Path, log: Logging | None = None) -> None:
        self.config_path = config_path
        self.log = log
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def sending_config(self) -> Config:
        """The config, checked for sending (``config.check_sending``); its warnings printed."""
        config = self.config
        for warning in check_sending(config):
            warn(warning)
        return config


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (default ./digest.toml, or $DIGEST_CONFIG).",
)
@click.option("-v", "--verbose", count=True, help="Show INFO and digest's DEBUG logs (-vv: every DEBUG log).")
@click.option("-q", "--quiet", is_flag=True, help="Print errors only (no report, no warnings; --json still prints).")
@click.version_option(package_name="digest")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int, quiet: bool) -> None:
    """Weekly themed email digests from web listings and feeds."""
    if verbose and quiet:
        raise click.UsageError("-v/--verbose and -q/--quiet exclude each other")
    # Warnings from deep inside (a lock taken over, a clipped issue) reach stderr as one line each.
    log = Logging(verbose, quiet)
    ctx.call_on_close(log.close)
    console.quiet = quiet
    _quiet[0] = quiet
    ctx.obj = Context(find_config(config_path), log)


def parse_date(value: str | None, param: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{param}: not a date like 2018-01-08: {value!r}") from None


def parse_week(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(IsoWeek.parse(value))
    except ValueError:
        raise ConfigError(f"--week: not an ISO week like 2018-W02: {value!r}") from None


def week_options(fn: Callable[P, R]) -> Callable[P, R]:
    fn = click.option("--since", help="Cover every week from this date (YYYY-MM-DD) to now.")(fn)
    fn = click.option("--week", help="The ISO week to cover, like 2018-W02 (default: last complete week).")(fn)
    return fn


def weeks_from(config: Config, week: str | None, since: str | None) -> tuple[IsoWeek, ...]:
    if week and since:
        raise ConfigError("--week and --since exclude each other")
    day = parse_date(since, "--since")
    now = utcnow()
    if day is not None and day > now.astimezone(config.digest.tz).date():
        raise ConfigError(f"--since: {day} is in the future")
    return pipeline.resolve_weeks(config, now, week=parse_week(week), since=day)
