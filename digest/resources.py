"""Where the files shipped with the package live (templates, demo data)."""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

import digest


def packaged_templates() -> Path:
    """The default templates: the repo's ``templates/`` in a checkout, ``digest/_templates`` in a wheel."""
    checkout = Path(digest.__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    # A folder without __init__.py is a namespace package: ask the import system where it is.
    spec = importlib.util.find_spec("digest._templates")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the packaged templates (digest._templates) are missing from this installation")
    return Path(next(iter(spec.submodule_search_locations)))


def demo_data() -> Path:
    """The bundled sample sources, config and subscribers."""
    return Path(str(resources.files("digest.demo_data")))
