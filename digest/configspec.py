"""The declarative reader behind ``digest.toml``: field specs and the one loader that walks them.

A setting is declared once, beside the dataclass field it fills::

    connect_timeout: float = setting(10.0, NUMBER, gt=0, le=DAY)

``setting`` stores a :class:`Spec` in the field's metadata; :func:`fields_of`
reads them back (or takes specs given separately, for the plain values in
``models`` such as ``Source``). :func:`load_table` then checks one TOML
table against them in a fixed order: unknown keys (with "did you mean"),
the environment override, presence, type, finiteness, range, choices, and
the field's own check. Every problem is a ``ConfigError`` reading
``<file>: <where>.<key>: <problem>`` on one line. Checks that involve more
than one field live in ``config.check`` and run once over the whole Config.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from digest.errors import ConfigError

T = TypeVar("T")

#: A field's own check: gets the reader, where the value is and the typed value;
#: returns the value to keep or raises ``ValueError(problem)``.
Check = Callable[["Reader", str, Any], Any]


@dataclass(frozen=True, slots=True)
class Kind:
    """A TOML value type: its name in messages, a test, and a conversion."""

    name: str
    accepts: Callable[[object], bool]
    convert: Callable[[Any], Any] = lambda v: v


def _is_int(v: object) -> bool:
    # bool is an int in Python; a bool where a number is wanted is a mistake.
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: int | float) -> float:
    value = float(v)
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {v!r}")
    return value


def _strings(v: str | list[str]) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    return tuple(s.strip() for s in items if s.strip())


INT = Kind("int", _is_int)
NUMBER = Kind("a number", lambda v: _is_int(v) or isinstance(v, float), _finite)
STR = Kind("a string", lambda v: isinstance(v, str))
BOOL = Kind("true or false", lambda v: isinstance(v, bool))
STRINGS = Kind(
    "a list of strings",
    lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)),
    _strings,
)
TABLE = Kind("a table", lambda v: isinstance(v, dict))
TABLES = Kind("an array of tables", lambda v: isinstance(v, list) and all(isinstance(t, dict) for t in v))


@dataclass(frozen=True, slots=True)
class Spec:
    """How one TOML key fills one field.

    ``key``: the TOML key (``None``: the field's name; ``""``: never read
    from the file, e.g. a password that only the environment gives).
    ``env``: an environment variable that, when set and not empty, wins
    over the file. ``gt``/``ge``/``le``: bounds for numbers. ``choices``:
    the allowed strings. ``check``: the field's own check and conversion.
    ``required``: a blank value is an error, and so is a missing one when
    the field has no default. ``check_default``: an absent key gets the
    default passed through ``check`` (a relative path resolved, say).
    """

    kind: Kind
    key: str | None = None
    env: str | None = None
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    check: Check | None = None
    required: bool = False
    check_default: bool = False


def setting(default: T, kind: Kind, **spec: Any) -> T:
    """A dataclass field with ``default`` whose TOML key is described by ``Spec(kind, **spec)``."""
    return dataclasses.field(default=default, metadata={"spec": Spec(kind, **spec)})


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A spec bound to its field: attribute name, TOML key, default."""

    attr: str
    key: str
    spec: Spec
    default: Any


def fields_of(cls: type, specs: Mapping[str, Spec] | None = None) -> tuple[FieldSpec, ...]:
    """The specs of dataclass ``cls``: from its fields' metadata, or from ``specs`` by attribute name."""
    out: list[FieldSpec] = []
    for f in dataclasses.fields(cls):
        spec = specs.get(f.name) if specs is not None else f.metadata.get("spec")
        if spec is None:
            continue
        key = f.name if spec.key is None else spec.key
        out.append(FieldSpec(f.name, key, spec, f.default))
    return tuple(out)


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``" (did you mean 'schedule'?)"`` for a close known word, else ``""``."""
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(choices: Sequence[str]) -> str:
    """``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bounds(spec: Spec, value: float) -> str | None:
    """The range problem of ``value``, or ``None`` when it is inside."""
    if spec.ge is not None and spec.le is not None:
        if not spec.ge <= value <= spec.le:
            return f"must be between {_number(spec.ge)} and {_number(spec.le)}, got {_number(value)}"
        return None
    if spec.gt is not None and not value > spec.gt:
        return f"must be greater than {_number(spec.gt)}, got {_number(value)}"
    if spec.ge is not None and not value >= spec.ge:
        return f"must be at least {_number(spec.ge)}, got {_number(value)}"
    if spec.le is not None and not value <= spec.le:
        return f"must be at most {_number(spec.le)}, got {_number(value)}"
    return None


class Reader:
    """Where a config file is and what the environment says; makes the one-line errors."""

    def __init__(self, path: Path, env: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.env = dict(os.environ) if env is None else dict(env)

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {problem}" if where else f"{self.path}: {problem}")

    def local_path(self, raw: str) -> Path:
        """``raw`` as a path; relative ones are relative to the config file's folder."""
        p = Path(raw).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    def unknown(self, where: str, raw: Mapping[str, Any], known: Iterable[str], what: str = "key") -> None:
        """Refuse the first key of ``raw`` that is not ``known``, suggesting the closest known one."""
        known = set(known)
        extra = sorted(set(raw) - known)
        if extra:
            name = f"{where}.{extra[0]}" if where else extra[0]
            raise self.fail(name, f"unknown {what}{did_you_mean(extra[0], known)}")

    def value(self, where: str, raw: Any, spec: Spec) -> Any:
        """One value checked against ``spec``: type, finiteness, range, choices, own check."""
        if not spec.kind.accepts(raw):
            raise self.fail(where, f"must be {spec.kind.name}, got {raw!r}")
        try:
            value = spec.kind.convert(raw)
            if isinstance(value, int | float) and not isinstance(value, bool):
                problem = _bounds(spec, value)
                if problem:
                    raise ValueError(problem)
            if spec.choices and value not in spec.choices:
                raise ValueError(f"must be {one_of(spec.choices)}, got {value!r}")
            if spec.check is not None:
                value = spec.check(self, where, value)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        return value

    def table(self, where: str, raw: object, fields: Sequence[FieldSpec]) -> dict[str, Any]:
        """Check the TOML table ``raw`` at ``where`` against ``fields``; the values given, by attribute.

        Keys that are absent are left out, so the dataclass default applies
        (passed through the field's check when it says ``check_default``).
        """
        if not isinstance(raw, dict):
            raise self.fail(where, "must be a table")
        for f in fields:
            if not f.key and f.spec.env and f.attr in raw:
                raise self.fail(f"{where}.{f.attr}", f"not read from the file: set ${f.spec.env}")
        self.unknown(where, raw, [f.key for f in fields if f.key])
        out: dict[str, Any] = {}
        for f in fields:
            name = f"{where}.{f.key or f.attr}"
            from_env = self.env.get(f.spec.env, "") if f.spec.env else ""
            if from_env:
                out[f.attr] = self.value(f"{name} (from ${f.spec.env})", from_env, f.spec)
                continue
            if not f.key or f.key not in raw:
                if f.spec.required and f.default is dataclasses.MISSING:
                    raise self.fail(name, "is required")
                if f.spec.check_default and f.spec.check is not None:
                    try:
                        out[f.attr] = f.spec.check(self, name, f.default)
                    except ValueError as exc:
                        raise self.fail(name, f"{exc} (the default)") from None
                continue
            if f.spec.required and isinstance(raw[f.key], str) and not raw[f.key].strip():
                raise self.fail(name, "is required" if f.default is dataclasses.MISSING else "must not be empty")
            out[f.attr] = self.value(name, raw[f.key], f.spec)
        return out
