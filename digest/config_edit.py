"""Edits of ``digest.toml`` made by commands: add and remove ``[[sources]]`` blocks.

The editor's file keeps its comments and layout: a source is added as a
block appended at the end, and removed by cutting its block (its header
line down to the next table header that is not one of its own subtables).
Every edit is checked by loading the edited text as a config before the
file is replaced, and the replacement is atomic (a temp file renamed over
it), so an edit never leaves a half-written or invalid config behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from digest.config import Config, load_config
from digest.errors import ConfigError

_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")


@dataclass(frozen=True, slots=True)
class NewSource:
    """A source to append: the keys a command line can give."""

    name: str
    url: str
    kind: str = "feed"
    theme: str | None = None
    format: str | None = None


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes), once non-ASCII is left as is.
    return json.dumps(value, ensure_ascii=False)


def source_block(source: NewSource) -> str:
    """The TOML text of one ``[[sources]]`` block."""
    lines = ["[[sources]]", f"name = {_toml_string(source.name)}", f"kind = {_toml_string(source.kind)}"]
    if source.format:
        lines.append(f"format = {_toml_string(source.format)}")
    lines.append(f"url = {_toml_string(source.url)}")
    if source.theme:
        lines.append(f"theme = {_toml_string(source.theme)}")
    return "\n".join(lines) + "\n"


def add_sources(path: Path, new: Sequence[NewSource]) -> Config:
    """Append ``new`` to the config at ``path``; ``ConfigError`` (and no change) if the result is invalid."""
    text = path.read_text(encoding="utf-8")
    existing = {s.name.casefold() for s in load_config(path).sources}
    for source in new:
        if source.name.casefold() in existing:
            raise ConfigError(f"{path}: a source named {source.name!r} already exists")
        existing.add(source.name.casefold())
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    edited = text + sep + "\n".join(source_block(s) for s in new)
    return _replace(path, edited)


def remove_source(path: Path, name: str) -> Config:
    """Cut the ``[[sources]]`` block named ``name`` from the config at ``path``."""
    config = load_config(path)
    index = next((i for i, s in enumerate(config.sources) if s.name == name), None)
    if index is None:
        raise ConfigError(f"{path}: no source named {name!r}")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _is_sources_header(line)]
    if len(starts) != len(config.sources):
        raise ConfigError(f"{path}: cannot find the [[sources]] blocks in the file (written inline?); edit it by hand")
    begin = starts[index]
    end = begin + 1
    while end < len(lines):
        m = _HEADER.match(lines[end])
        if m and not m.group(1).replace(" ", "").startswith("sources."):
            break
        end += 1
    # Comment lines just above the next header belong to it, not to the block being cut.
    while end > begin + 1 and lines[end - 1].lstrip().startswith("#"):
        end -= 1
    return _replace(path, "".join(lines[:begin] + lines[end:]))


def _is_sources_header(line: str) -> bool:
    m = _HEADER.match(line)
    return m is not None and line.strip().startswith("[[") and m.group(1).replace(" ", "") == "sources"


def _replace(path: Path, text: str) -> Config:
    """Check ``text`` as a config in ``path``'s folder, then put it in place atomically."""
    fd, tmp = tempfile.mkstemp(prefix=".digest-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            load_config(Path(tmp))
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(tmp, str(path)) + " (file left unchanged)") from None
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return load_config(path)
