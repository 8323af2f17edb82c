"""``[[sources]]`` and ``[[themes]]``: the specs of their keys and the checks within one entry.

Messages count entries from 1 and name them: ``sources[2] ("AI Watch").url: ...``.
The specs are kept here rather than on ``models.Source`` and
``models.Theme``, which are plain values that the stages share.
"""

from __future__ import annotations

from typing import Any

from digest.configcheck import check_http_url
from digest.configspec import BOOL, STR, STRINGS, TABLE, Reader, Spec, fields_of, one_of
from digest.models import DEFAULT_TEXT_RECORD, ListingFormat, Selectors, Source, SourceKind, Theme

RECORD_PARTS = frozenset({"title", "link", "authors", "date", "summary"})


def label(what: str, index: int, name: object) -> str:
    """``sources[1] ("Cyber Feed")``, or ``sources[1]`` when the entry has no usable name."""
    if isinstance(name, str) and name.strip():
        return f'{what}[{index}] ("{name.strip()}")'
    return f"{what}[{index}]"


def _css(r: Reader, where: str, value: str) -> str:
    from lxml.cssselect import CSSSelector, SelectorError  # lxml is slow to import; only here

    try:
        CSSSelector(value)
    except SelectorError as exc:
        raise ValueError(f"invalid CSS selector {value!r}: {exc}") from None
    return value


SELECTOR_FIELDS = fields_of(
    Selectors,
    {
        "item": Spec(STR, check=_css, required=True),
        **{k: Spec(STR, check=_css) for k in ("title", "link", "date", "summary", "author")},
    },
)


def _selectors(r: Reader, where: str, value: dict[str, Any]) -> Selectors:
    return Selectors(**r.table(where, value, SELECTOR_FIELDS))


def _url(r: Reader, where: str, value: str) -> str:
    value = value.strip()
    if "://" in value:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"only http(s) URLs or local paths are allowed, got {value!r}")
        return check_http_url(r, where, value)
    return str(r.local_path(value))


def _record(r: Reader, where: str, value: tuple[str, ...]) -> tuple[str, ...]:
    record = value or DEFAULT_TEXT_RECORD
    bad = [p for p in record if p not in RECORD_PARTS]
    if bad or "date" not in record or len(set(record)) != len(record):
        raise ValueError(
            f"must list each of {sorted(RECORD_PARTS)} at most once and include 'date', got {list(record)!r}"
        )
    return record


SOURCE_FIELDS = fields_of(
    Source,
    {
        "name": Spec(STR, required=True, check=lambda r, w, v: v.strip()),
        "kind": Spec(STR, check=lambda r, w, v: SourceKind(v), choices=tuple(k.value for k in SourceKind)),
        "url": Spec(STR, required=True, check=_url),
        "format": Spec(STR, check=lambda r, w, v: ListingFormat(v), choices=tuple(f.value for f in ListingFormat)),
        "theme": Spec(STR, check=lambda r, w, v: v.strip() or None),
        "selectors": Spec(TABLE, check=_selectors),
        "date_format": Spec(STR),
        "record": Spec(STRINGS, check=_record),
        "enabled": Spec(BOOL),
    },
)

THEME_FIELDS = fields_of(
    Theme,
    {
        "name": Spec(STR, required=True, check=lambda r, w, v: v.strip()),
        "keywords": Spec(STRINGS),
        "phrases": Spec(STRINGS),
        "categories": Spec(STRINGS),
        "sources": Spec(STRINGS),
    },
)


def _entries(r: Reader, what: str, raw: object) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(raw, list):
        raise r.fail(what, f"must be an array of tables ([[{what}]])")
    out = []
    for i, item in enumerate(raw, 1):
        where = label(what, i, item.get("name") if isinstance(item, dict) else None)
        if not isinstance(item, dict):
            raise r.fail(where, "must be a table")
        out.append((where, item))
    return out


def read_sources(r: Reader, raw: object) -> tuple[Source, ...]:
    """The ``[[sources]]`` array: each entry checked, names unique."""
    out: list[Source] = []
    for where, item in _entries(r, "sources", raw):
        values = r.table(where, item, SOURCE_FIELDS)
        if values["name"] in {s.name for s in out}:
            raise r.fail(f"{where}.name", f"source {values['name']!r} is defined twice")
        kind = values.setdefault("kind", SourceKind.FEED)
        if kind is SourceKind.LISTING:
            fmt = values.setdefault("format", ListingFormat.HTML)
            if fmt is ListingFormat.HTML and "selectors" not in values:
                raise r.fail(f"{where}.selectors.item", "an html listing needs [sources.selectors] with at least item")
            if fmt is not ListingFormat.HTML and "selectors" in values:
                raise r.fail(f"{where}.selectors", "selectors apply to format = 'html' only")
        elif "format" in values or "selectors" in values:
            raise r.fail(f"{where}.format", f"format and selectors apply to kind = {one_of(['listing'])} only")
        values.setdefault("record", DEFAULT_TEXT_RECORD)
        out.append(Source(**values))
    return tuple(out)


def read_themes(r: Reader, raw: object) -> tuple[Theme, ...]:
    """The ``[[themes]]`` array: each entry checked, names unique (ignoring case), each able to match."""
    out: list[Theme] = []
    for where, item in _entries(r, "themes", raw):
        theme = Theme(**r.table(where, item, THEME_FIELDS))
        if theme.name.casefold() in {t.name.casefold() for t in out}:
            raise r.fail(f"{where}.name", f"theme {theme.name!r} is defined twice")
        if not (theme.keywords or theme.phrases or theme.categories or theme.sources):
            raise r.fail(where, f"theme {theme.name!r} can never match: give keywords, phrases, categories or sources")
        out.append(theme)
    return tuple(out)
