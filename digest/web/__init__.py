"""Preview pages and the one-click unsubscribe endpoint (a Starlette app).

The app sees the rest of digest only through the ``Backend`` seam; see
``seam`` for the values it exchanges and ``app`` for the routes.
"""

from __future__ import annotations

from digest.web.app import create_app
from digest.web.seam import Backend, Preview, PreviewSubscriber, PreviewVariant
from digest.web.server import check_listen, serve, server_config

__all__ = [
    "Backend",
    "Preview",
    "PreviewSubscriber",
    "PreviewVariant",
    "check_listen",
    "create_app",
    "serve",
    "server_config",
]
