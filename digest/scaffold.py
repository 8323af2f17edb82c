"""``digest init``: a working folder that runs as it is, on bundled sample sources."""

from __future__ import annotations

import shutil
from pathlib import Path

from digest.errors import ConfigError
from digest.resources import demo_data, packaged_templates

SAMPLE_SOURCES = ("china-us-focus-cyber.txt", "cyber-policy.rss.xml", "ai-watch.atom.xml")


def scaffold(directory: Path) -> list[Path]:
    """Create ``digest.toml``, ``templates/``, ``subscribers/`` and ``sources/`` in ``directory``.

    Existing files are never overwritten; the returned list holds what was created.
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a folder")
    data = demo_data()
    plan: list[tuple[Path, Path]] = [
        (data / "digest.toml", directory / "digest.toml"),
        (data / "subscribers.csv", directory / "subscribers" / "subscribers.csv"),
    ]
    plan += [(data / name, directory / "sources" / name) for name in SAMPLE_SOURCES]
    templates = packaged_templates()
    plan += [
        (p, directory / "templates" / p.relative_to(templates))
        for p in sorted(templates.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    ]
    made: list[Path] = []
    for src, dest in plan:
        if dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        made.append(dest)
    return made
