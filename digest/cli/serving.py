"""``digest preview``, ``serve`` and ``demo``.

The preview pages list subscribers' addresses and offer messages with live
unsubscribe links, so ``serve`` shows them by default only on a loopback
host; on any other host they need an explicit ``--preview``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

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
from digest.netutil import is_loopback_host

PORT = click.IntRange(1, 65535)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as given to ``--host``) is ``localhost``, 127.0.0.0/8 or ``::1``."""
    return is_loopback_host(host)


def preview_enabled(host: str, requested: bool | None) -> bool:
    """Whether ``serve`` shows the preview: as ``--preview/--no-preview`` say, else only on loopback."""
    return is_loopback(host) if requested is None else requested


def preview_note(host: str, requested: bool | None) -> str:
    """The start-up line saying whether the preview is served, and why."""
    if requested is True:
        return "preview: on (--preview)"
    if requested is False:
        return "preview: off (--no-preview)"
    if is_loopback(host):
        return "preview: on (loopback host; --no-preview turns it off)"
    return "preview: off (not a loopback host; --preview turns it on)"


def http_url(host: str, port: int) -> str:
    """``http://host:port/``, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


@cli.command()
@click.option("--port", type=PORT, default=8025, show_default=True, help="Port on 127.0.0.1.")
@click.option("--week", help="Start on this ISO week instead of the next issue.")
@pass_ctx
@handle_errors
def preview(ctx: Context, port: int, week: str | None) -> None:
    """Serve the next issue on 127.0.0.1; rebuilds when templates, config or subscribers change."""
    from digest.backend import LocalBackend
    from digest.web import check_listen, create_app, serve

    backend = LocalBackend(ctx.config_path, default_week=parse_week(week))
    config = ctx.config
    check_listen("127.0.0.1", port)
    console.print(f"preview of {config.digest.title} on {http_url('127.0.0.1', port)} (Ctrl-C stops)", markup=False)
    serve(create_app(backend, title=config.digest.title), host="127.0.0.1", port=port)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=PORT, default=8025, show_default=True, help="Port to listen on.")
@click.option(
    "--preview/--no-preview",
    "show_preview",
    default=None,
    help="Serve the preview pages, which show subscribers' addresses and live unsubscribe links."
    " Default: on for a loopback host (127.0.0.0/8, ::1, localhost), off for any other.",
)
@pass_ctx
@handle_errors
def serve(ctx: Context, host: str, port: int, show_preview: bool | None) -> None:
    """Serve the one-click unsubscribe endpoint and web versions, and the preview on loopback."""
    from digest.backend import LocalBackend
    from digest.web import check_listen, create_app
    from digest.web import serve as run_server

    # Links signed with the stand-in key could be forged: the public endpoint needs the real secret.
    pipeline.secret(ctx.config, strict=True)
    backend = LocalBackend(ctx.config_path, strict_tokens=True)
    enabled = preview_enabled(host, show_preview)
    title = ctx.config.digest.title
    check_listen(host, port)
    console.print(f"serving on {http_url(host, port)} (Ctrl-C stops)", markup=False)
    console.print(preview_note(host, show_preview), markup=False)
    if enabled and not is_loopback(host):
        err_console.print(
            f"warning: anyone who can reach {host} sees the preview: subscribers' addresses"
            " and messages with working unsubscribe links",
            markup=False,
        )
    run_server(create_app(backend, title=title, enable_preview=enabled), host=host, port=port)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="demo")
@handle_errors
def demo(directory: Path) -> None:
    """The whole job on bundled sample data: fetch, build, send over real SMTP on loopback."""
    from digest.demo import run_demo

    sys.exit(run_demo(directory, console))
