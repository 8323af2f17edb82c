"""``digest init``: a working folder that runs as it is, on bundled sample sources."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from digest.errors import ConfigError
from digest.resources import demo_data, packaged_templates

SAMPLE_SOURCES = ("china-us-focus-cyber.txt", "cyber-policy.rss.xml", "ai-watch.atom.xml")


def template_root() -> Traversable:
    """The shipped templates: the checkout's ``templates/``, else the installed ``digest._templates``.

    In a wheel ``digest._templates`` has no ``__init__.py``, so importlib hands
    back a ``MultiplexedPath`` that only works as a ``Traversable``, never as
    a ``Path`` made from its ``str``.
    """
    checkout = packaged_templates()
    return checkout if checkout.is_dir() else resources.files("digest._templates")


def _files(root: Traversable, rel: PurePosixPath) -> Iterator[tuple[Traversable, PurePosixPath]]:
    for child in sorted(root.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            yield from _files(child, rel / child.name)
        elif child.is_file():
            yield child, rel / child.name


@dataclass(frozen=True, slots=True)
class Scaffolded:
    """What ``scaffold`` did: the files it ``made`` and the existing ones it ``kept`` as they were."""

    made: tuple[Path, ...]
    kept: tuple[Path, ...]


def scaffold(directory: Path) -> Scaffolded:
    """Create ``digest.toml``, ``templates/``, ``subscribers/`` and ``sources/`` in ``directory``.

    Existing files are never overwritten: they are listed as kept.
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a folder")
    data = demo_data()
    plan: list[tuple[Traversable, Path]] = [
        (data / "digest.toml", directory / "digest.toml"),
        (data / "subscribers.csv", directory / "subscribers" / "subscribers.csv"),
    ]
    plan += [(data / name, directory / "sources" / name) for name in SAMPLE_SOURCES]
    plan += [(src, directory / "templates" / rel) for src, rel in _files(template_root(), PurePosixPath())]
    made: list[Path] = []
    kept: list[Path] = []
    for src, dest in plan:
        if dest.exists():
            kept.append(dest)
            continue
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{exc.filename or dest}: cannot create: {exc.strerror or exc}") from exc
        made.append(dest)
    return Scaffolded(tuple(made), tuple(kept))
