"""digest.toml → Config: defaults, paths, and one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import find_config, load_config
from digest.errors import ConfigError
from digest.models import ListingFormat, SourceKind
from digest.resources import demo_data


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_config_loads_with_relative_paths_resolved() -> None:
    config = load_config(demo_data() / "digest.toml")
    assert config.digest.title == "Cyber Weekly"
    assert config.digest.timezone == "Asia/Shanghai"
    listing = config.sources[0]
    assert listing.kind is SourceKind.LISTING and listing.format is ListingFormat.TEXT
    assert Path(listing.url).is_absolute() and listing.url.endswith("sources/china-us-focus-cyber.txt")
    assert config.digest.database == "sqlite:///" + str(demo_data() / "digest.db")
    assert config.themes[0].name == "AI & tech competition"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.sources == () and config.themes == ()
    assert config.sender.transport == "maildir"
    assert config.sender.maildir == tmp_path / "outbox"
    assert config.digest.schedule_parts == ("mon", 8, 0)


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[sender]\nusername = "u"\n')
    config = load_config(path, env={"DIGEST_SMTP_PASSWORD": "s3cret", "DIGEST_SECRET": "k"})
    assert config.sender.password == "s3cret"
    assert config.digest.secret == "k"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[digest]\ntimezone = "Mars/Olympus"', "digest.timezone", "unknown time zone"),
        ('[digest]\nschedule = "someday"', "digest.schedule", "must look like"),
        ("[digest]\nmin_entries = true", "digest.min_entries", "must be int"),
        ('[digest]\ncolour = "red"', "digest.colour", "unknown key"),
        ('[sender]\ntransport = "pigeon"', "sender.transport", "must be 'smtp' or 'maildir'"),
        ("[sender]\nport = 70000", "sender.port", "TCP port"),
        ('[[sources]]\nname = "x"\nurl = "ftp://e.org/feed"', "sources[0].url", "only http(s)"),
        ('[[sources]]\nname = "x"', "sources[0].url", "is required"),
        ('[[sources]]\nname = "x"\nkind = "tweet"\nurl = "a.xml"', "sources[0].kind", "must be 'feed'"),
        ('[[sources]]\nname = "x"\nkind = "listing"\nurl = "a.html"', "sources[0].selectors.item", "needs"),
        (
            '[[sources]]\nname = "x"\nkind = "listing"\nurl = "a.html"\n[sources.selectors]\nitem = "li[["',
            "sources[0].selectors.item",
            "invalid CSS selector",
        ),
        (
            '[[sources]]\nname = "x"\nkind = "listing"\nformat = "text"\nurl = "a.txt"\nrecord = ["summary"]',
            "sources[0].record",
            "include 'date'",
        ),
        ('[[themes]]\nname = "AI"\nkeywords = []', "themes[0]", "can never match"),
        (
            '[[themes]]\nname = "AI"\nkeywords = ["ai"]\n[[themes]]\nname = "ai"\nkeywords = ["x"]',
            "themes[1].name",
            "twice",
        ),
        ("[digest\n", "", "not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_problem(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert key in message
    assert problem in message
    assert info.value.exit_code == 2


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_find_config_prefers_argument_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config(None) == tmp_path / "digest.toml"
    monkeypatch.setenv("DIGEST_CONFIG", str(tmp_path / "env.toml"))
    assert find_config(None) == tmp_path / "env.toml"
    assert find_config(str(tmp_path / "arg.toml")) == tmp_path / "arg.toml"
