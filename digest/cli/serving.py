"""``digest preview``, ``serve`` and ``demo``.

The preview pages list subscribers' addresses and offer messages with live
unsubscribe links, so ``preview`` listens on loopback only and ``serve`` (the
public endpoints, normally behind a reverse proxy) shows them only when
given ``--preview``. Both answer only requests for the ``base_url`` host or a
loopback name (see ``digest.web.hosts``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from digest.config import Config
    from digest.web.archive import ArchiveOptions

from digest.cli.base import (
    Context,
    cli,
    console,
    err_console,
    handle_errors,
    parse_week,
    pass_ctx,
    pipeline,
)
from digest.errors import ConfigError
from digest.netutil import is_loopback_host

PORT = click.IntRange(1, 65535)


def preview_note(enabled: bool) -> str:
    """The start-up line of ``serve`` saying whether the preview is served."""
    return "preview: on (--preview)" if enabled else "preview: off (--preview turns it on)"


def http_url(host: str, port: int) -> str:
    """``http://host:port/``, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


@cli.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Loopback address to listen on (127.0.0.0/8, ::1)."
)
@click.option("--port", type=PORT, default=8025, show_default=True, help="Port to listen on.")
@click.option("--week", help="Start on this ISO week instead of the next issue.")
@pass_ctx
@handle_errors
def preview(ctx: Context, host: str, port: int, week: str | None) -> None:
    """Serve the next issue on loopback; rebuilds when templates, config or subscribers change."""
    from digest.backend import LocalBackend
    from digest.web import check_listen, create_app, serve

    if not is_loopback_host(host):
        raise ConfigError(
            f"--host: the preview shows subscribers' addresses, so it listens on loopback only"
            f" (127.0.0.0/8, ::1, localhost), not {host!r}; a public server is 'digest serve'"
        )
    backend = LocalBackend(ctx.config_path, default_week=parse_week(week))
    config = ctx.config
    check_listen(host, port)
    console.print(f"preview of {config.digest.title} on {http_url(host, port)} (Ctrl-C stops)", markup=False)
    # The preview sends no mail: sign-ups are the public server's (`digest serve`).
    app = create_app(backend, title=config.digest.title, base_url=config.digest.base_url, subscribe=False)
    serve(app, host=host, port=port)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=PORT, default=8025, show_default=True, help="Port to listen on.")
@click.option(
    "--preview/--no-preview",
    "show_preview",
    default=False,
    help="Also serve the preview pages, which show subscribers' addresses and live unsubscribe links. Default: off.",
)
@pass_ctx
@handle_errors
def serve(ctx: Context, host: str, port: int, show_preview: bool) -> None:
    """Serve the one-click unsubscribe endpoint and web versions; the preview only with --preview."""
    from digest.backend import LocalBackend
    from digest.web import check_listen, create_app
    from digest.web import serve as run_server

    # Links signed with the stand-in key could be forged: the public endpoint needs the real secret.
    pipeline.secret(ctx.config, strict=True)
    backend = LocalBackend(ctx.config_path, strict_tokens=True)
    title = ctx.config.digest.title
    check_listen(host, port)
    console.print(f"serving on {http_url(host, port)} (Ctrl-C stops)", markup=False)
    console.print(preview_note(show_preview), markup=False)
    if show_preview and not is_loopback_host(host):
        err_console.print(
            f"warning: anyone who can reach {host} sees the preview: subscribers' addresses"
            " and messages with working unsubscribe links",
            markup=False,
        )
    app = create_app(
        backend,
        title=title,
        enable_preview=show_preview,
        base_url=ctx.config.digest.base_url,
        archive=archive_options(ctx.config),
    )
    run_server(app, host=host, port=port)


def archive_options(config: Config) -> ArchiveOptions | None:
    """The public archive's options, or None when ``[web] archive`` is off."""
    from digest.web.archive import ArchiveOptions

    if config.web.archive != "public":
        return None
    return ArchiveOptions(base_url=config.digest.base_url, full=config.web.archive_feed == "full")


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="demo")
@handle_errors
def demo(directory: Path) -> None:
    """The whole job on bundled sample data: fetch, build, send over real SMTP on loopback."""
    from digest.demo import run_demo

    sys.exit(run_demo(directory, console))
