"""Contrast of the email's small text against its backgrounds, read from templates/styles.css (WCAG 2.x AA).

Meta, count and footer lines are small (11-13px), so they need 4.5:1, as body
text does. The ratios are computed from the colours the stylesheet gives,
in light mode and in its ``prefers-color-scheme: dark`` block.
"""

from __future__ import annotations

import re

import pytest

from digest.resources import packaged_templates

CSS = (packaged_templates() / "styles.css").read_text(encoding="utf-8")
AA = 4.5

#: Text class → the class whose background it sits on (white .container unless a box of its own).
PAIRS = {
    "meta": "container",
    "also": "container",
    "also-link": "container",
    "section-count": "container",
    "toc-count": "toc-box",
    "toc-title": "toc-box",
    "footer-text": "footer",
    "footer-link": "footer",
    "lede": "container",
    "header-meta": "header",
    "section-label": "container",
    "carried": "container",
}


def luminance(colour: str) -> float:
    """Relative luminance of ``#rrggbb`` (or ``#rgb``), as WCAG 2.x defines it."""
    hexa = colour.lstrip("#")
    if len(hexa) == 3:
        hexa = "".join(c * 2 for c in hexa)
    if not re.fullmatch(r"[0-9a-fA-F]{6}", hexa):
        raise ValueError(f"not a #rrggbb colour: {colour!r}")
    channels = [int(hexa[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def rules(css: str) -> dict[str, dict[str, str]]:
    """``{class: {property: value}}`` of plain ``.class`` selectors (later rules win, ``!important`` dropped)."""
    found: dict[str, dict[str, str]] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        decls = {}
        for decl in body.split(";"):
            name, _, value = decl.partition(":")
            if value.strip():
                decls[name.strip()] = value.replace("!important", "").strip()
        for selector in selectors.split(","):
            m = re.fullmatch(r"\s*\.([\w-]+)\s*", selector)
            if m:
                found.setdefault(m.group(1), {}).update(decls)
    return found


def split_dark(css: str) -> tuple[str, str]:
    """The stylesheet without its ``@media`` blocks, and the body of its dark-mode block."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    dark = re.search(r"@media\s*\(prefers-color-scheme:\s*dark\)\s*\{((?:[^{}]*\{[^{}]*\})*)\s*\}", css)
    assert dark is not None, "styles.css has a dark-mode block"
    light = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*\s*\}", "", css)
    return light, dark.group(1)


def background(styles: dict[str, dict[str, str]], cls: str, fallback: str) -> str:
    return styles.get(cls, {}).get("background-color") or fallback


LIGHT, DARK = split_dark(CSS)
LIGHT_RULES = rules(LIGHT)
DARK_RULES = {cls: {**LIGHT_RULES.get(cls, {}), **decls} for cls, decls in rules(DARK).items()}


@pytest.mark.parametrize(("text", "under"), sorted(PAIRS.items()))
def test_small_text_meets_aa_in_light_mode(text: str, under: str) -> None:
    colour = LIGHT_RULES[text]["color"]
    back = background(LIGHT_RULES, under, background(LIGHT_RULES, "container", "#ffffff"))
    assert contrast(colour, back) >= AA, f".{text} {colour} on {back}: {contrast(colour, back):.2f}:1"


@pytest.mark.parametrize(("text", "under"), sorted(PAIRS.items()))
def test_small_text_meets_aa_in_dark_mode(text: str, under: str) -> None:
    colour = DARK_RULES.get(text, {}).get("color") or LIGHT_RULES[text]["color"]
    container = background(DARK_RULES, "container", LIGHT_RULES["container"]["background-color"])
    back = DARK_RULES.get(under, {}).get("background-color") or background(LIGHT_RULES, under, container)
    if under == "footer":
        back = DARK_RULES["footer"]["background-color"]
    assert contrast(colour, back) >= AA, f"dark .{text} {colour} on {back}: {contrast(colour, back):.2f}:1"


def test_the_meta_and_footer_colours_named_in_the_issue() -> None:
    # #616e7c: 5.21:1 on white, 4.81:1 on the contents box; the old #7b8794 was 3.66:1, #9aa5b1 2.5:1.
    assert round(contrast("#616e7c", "#ffffff"), 2) == 5.21
    assert round(contrast("#616e7c", "#f4f6f9"), 2) == 4.81
    assert round(contrast("#7b8794", "#ffffff"), 2) == 3.66
    for cls in ("meta", "footer-text", "toc-count", "section-count", "also"):
        assert LIGHT_RULES[cls]["color"] == "#616e7c", cls


def test_the_reader_rejects_what_is_not_a_colour() -> None:
    assert luminance("#fff") == luminance("#ffffff") == pytest.approx(1.0)
    assert luminance("#000000") == 0.0
    for bad in ("red", "#12345", "#gggggg", "rgb(0,0,0)", ""):
        with pytest.raises(ValueError):
            luminance(bad)
    # A selector list, !important and a later rule are read as the mail client would.
    parsed = rules(".a, .b { color: #111111 !important; } .b { color: #222222 } p.c { color: #333333 }")
    assert parsed == {"a": {"color": "#111111"}, "b": {"color": "#222222"}}
