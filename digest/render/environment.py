"""The Jinja2 environment: where templates come from, filters, and errors.

A working folder's ``templates/`` overrides the packaged templates file by
file. Undefined names raise (``StrictUndefined``); ``.html``/``.html.j2``
templates autoescape, text templates do not. Every Jinja2 failure becomes a
one-line ``RenderError`` that names the template file and line.
"""

from __future__ import annotations

import functools
import importlib.resources
import textwrap
import types
from collections.abc import Callable, Iterator
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import NoReturn

import jinja2

import digest
from digest.errors import RenderError

#: The templates a renderer needs; the others are included by these.
DIGEST_HTML = "digest.html.j2"
DIGEST_TEXT = "digest.txt.j2"
SUBJECT = "subject.txt.j2"
WIDTH = 72
_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".html", ".txt", ".css")


def packaged_templates() -> Path | Traversable:
    """The default templates: the repo's ``templates/`` in a checkout, else ``digest._templates``."""
    checkout = Path(digest.__file__).resolve().parent.parent / "templates"
    if (checkout / DIGEST_HTML).is_file():
        return checkout
    return importlib.resources.files("digest._templates")


class _ResourceLoader(jinja2.BaseLoader):
    """Templates from package resources that may not be plain files (a zipped wheel)."""

    def __init__(self, root: Traversable) -> None:
        self.root = root

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        node = self.root.joinpath(*template.split("/"))
        if not node.is_file():
            raise jinja2.TemplateNotFound(template)
        return node.read_text(encoding="utf-8"), f"templates/{template}", lambda: True

    def list_templates(self) -> list[str]:
        return sorted(_walk(self.root, ""))


def _walk(node: Traversable, prefix: str) -> Iterator[str]:
    for child in node.iterdir():
        if child.is_dir():
            yield from _walk(child, f"{prefix}{child.name}/")
        elif child.is_file():
            yield prefix + child.name


def wrap(text: str, width: int = WIDTH, indent: str = "", first: str | None = None) -> str:
    """``text`` wrapped at ``width`` columns; long words such as URLs are never broken."""
    if type(text) is str:
        # The same entry's lines come back in every variant that shows it.
        return _wrap_str(text, width, indent, first)
    return _wrap_str.__wrapped__(str(text), width, indent, first)


@functools.lru_cache(maxsize=4096)
def _wrap_str(text: str, width: int, indent: str, first: str | None) -> str:
    wrapper = textwrap.TextWrapper(
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    return "\n\n".join(wrapper.fill(p) for p in paragraphs if p)


def build_environment(templates_dir: Path | None) -> jinja2.Environment:
    """A strict environment over the working folder's templates, then the packaged ones."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None and templates_dir.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    packaged = packaged_templates()
    if isinstance(packaged, Path):
        loaders.append(jinja2.FileSystemLoader(str(packaged)))
    else:
        loaders.append(_ResourceLoader(packaged))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "html.j2"), default_for_string=False, default=False
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters["wrap"] = wrap
    return env


def load(env: jinja2.Environment, name: str) -> jinja2.Template:
    """``env.get_template(name)`` with Jinja2 errors made ``RenderError``."""
    try:
        return env.get_template(name)
    except jinja2.TemplateError as exc:
        raise_render_error(exc, name)


def check_all(env: jinja2.Environment) -> None:
    """Compile every template now, so a syntax error shows before anything is sent."""
    assert env.loader is not None
    for name in sorted(set(env.loader.list_templates())):
        if name.endswith(".j2"):
            load(env, name)


def raise_render_error(exc: jinja2.TemplateError, fallback: str) -> NoReturn:
    """Raise ``RenderError("path:line: message")`` from a Jinja2 error."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = f"{exc.filename or exc.name or fallback}:{exc.lineno}"
    elif isinstance(exc, jinja2.TemplateNotFound):
        where = fallback
    else:
        where = _location(exc.__traceback__) or fallback
    message = " ".join(str(exc.message or exc).split())
    raise RenderError(f"{where}: {message}") from exc


def _location(tb: types.TracebackType | None) -> str | None:
    """The innermost template frame of a traceback Jinja2 rewrote to point into templates."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        # Jinja2 rewrites template frames to carry the template's file name.
        if filename.endswith(_TEMPLATE_SUFFIXES):
            found = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found
