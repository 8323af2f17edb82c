"""Rendering: an Issue into inlined HTML, plaintext and a subject, per variant.

``Renderer`` owns the Jinja2 environment (working-folder templates over the
packaged ones), renders each distinct theme selection once with placeholder
tokens, inlines its CSS once, and returns ``models.Rendered``. Feed HTML is
sanitised with nh3 before any template sees it.
"""

from __future__ import annotations

from digest.render.renderer import EmptyVariant, Renderer, RenderSettings, variant_key
from digest.render.sanitize import sanitize_html

__all__ = ["EmptyVariant", "RenderSettings", "Renderer", "sanitize_html", "variant_key"]
