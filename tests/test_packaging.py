"""The wheel ships every subpackage, and the README documents every command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from click.testing import CliRunner

from digest.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "digest").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found - listed == set()


def _commands() -> list[str]:
    names = []
    for name, command in cli.commands.items():
        sub = getattr(command, "commands", None)
        names += [f"{name} {s}" for s in sub] if sub else [name]
    return sorted(names)


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    runner = CliRunner()
    for name in _commands():
        result = runner.invoke(cli, [*name.split(), "--help"])
        assert result.exit_code == 0, name
        assert "Usage:" in result.output
        assert f"`digest {name}" in readme, f"digest {name} is not documented in README.md"


def test_every_config_key_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    from digest.config import TABLES
    from digest.configsources import SELECTOR_FIELDS, SOURCE_FIELDS, THEME_FIELDS
    from digest.configspec import fields_of

    specs = [f for cls in TABLES.values() for f in fields_of(cls)] + [
        *SOURCE_FIELDS,
        *SELECTOR_FIELDS,
        *THEME_FIELDS,
    ]
    assert len(specs) > 60
    for spec in specs:
        if not spec.key:
            continue  # from the environment only (the SMTP password)
        pattern = r"^\[sources\.selectors\]" if spec.key == "selectors" else rf"^{spec.key} = "
        assert re.search(pattern, readme, re.M), f"config key {spec.key} is not in README.md"
