"""Where the files shipped with the package live (templates, demo data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import digest


def packaged_templates() -> Path:
    """The default templates: the repo's ``templates/`` in a checkout, ``digest/_templates`` in a wheel."""
    checkout = Path(digest.__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("digest._templates")))


def demo_data() -> Path:
    """The bundled sample sources, config and subscribers."""
    return Path(str(resources.files("digest.demo_data")))
