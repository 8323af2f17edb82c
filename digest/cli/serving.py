"""``digest preview``, ``serve`` and ``demo``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from digest.cli.base import (
    Context,
    cli,
    console,
    handle_errors,
    parse_week,
    pass_ctx,
)


@cli.command()
@click.option("--port", default=8025, show_default=True, help="Port on 127.0.0.1.")
@click.option("--week", help="Start on this ISO week instead of the next issue.")
@pass_ctx
@handle_errors
def preview(ctx: Context, port: int, week: str | None) -> None:
    """Serve the next issue on 127.0.0.1; rebuilds when templates, config or subscribers change."""
    from digest.backend import LocalBackend
    from digest.web import create_app, serve

    backend = LocalBackend(ctx.config_path, default_week=parse_week(week))
    config = ctx.config
    console.print(f"preview of {config.digest.title} on http://127.0.0.1:{port}/ (Ctrl-C stops)")
    serve(create_app(backend, title=config.digest.title), host="127.0.0.1", port=port)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True)
@click.option("--no-preview", is_flag=True, help="Serve only unsubscribe and web-version pages.")
@pass_ctx
@handle_errors
def serve(ctx: Context, host: str, port: int, no_preview: bool) -> None:
    """Serve the preview pages and the one-click unsubscribe endpoint."""
    from digest.backend import LocalBackend
    from digest.web import create_app
    from digest.web import serve as run_server

    backend = LocalBackend(ctx.config_path)
    console.print(f"serving on http://{host}:{port}/")
    run_server(
        create_app(backend, title=ctx.config.digest.title, enable_preview=not no_preview),
        host=host,
        port=port,
    )


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="demo")
@handle_errors
def demo(directory: Path) -> None:
    """The whole job on bundled sample data: fetch, build, send over real SMTP on loopback."""
    from digest.demo import run_demo

    sys.exit(run_demo(directory, console))
