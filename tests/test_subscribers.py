"""subscribers: list files, their management, and unsubscribe tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.errors import SubscriberError
from digest.models import Subscriber, SubscriberStatus
from digest.subscribers import (
    active_subscribers,
    add_subscriber,
    email_key,
    import_file,
    load_lists,
    normalise_email,
    remove_subscriber,
)

THEMES = ("Policy", "Threats", "Industry")
EXAMPLE = Path(__file__).parent.parent / "subscribers" / "example.csv"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "subscribers"


def test_load_valid_rows(folder: Path) -> None:
    write(
        folder / "main.csv",
        "email,name,themes,timezone\n"
        "Ann@Example.ORG,  Ann   Example ,policy; threats,Europe/Berlin\n"
        "\n"
        "# bob@example.org,commented out,,\n"
        "li@bücher.de,李雷,,\n",
    )
    result = load_lists(folder, THEMES)
    assert result.problems == ()
    ann, li = result.subscribers
    assert ann == Subscriber("Ann@example.org", "Ann Example", frozenset({"Policy", "Threats"}), "Europe/Berlin")
    assert li.email == "li@xn--bcher-kva.de" and li.name == "李雷" and li.themes == frozenset()
    assert li.timezone is None and li.wants("Industry")


def test_bad_rows_are_reported_and_skipped(folder: Path) -> None:
    write(
        folder / "main.csv",
        "email,name,themes,timezone\n"
        "ok1@example.org,One,,\n"
        "bob@,Bob,,\n"
        "ok2@example.org,Two,Nope,\n"
        "ok3@example.org,Three,,Mars/Olympus\n"
        "zoë@example.org,Zoë,,\n"
        "ok4@example.org,Four,,\n",
    )
    result = load_lists(folder, THEMES)
    assert [s.email for s in result.subscribers] == ["ok1@example.org", "ok4@example.org"]
    assert len(result.problems) == 4
    assert result.problems[0].startswith("subscribers/main.csv:3: invalid address 'bob@': ")
    assert result.problems[1].startswith("subscribers/main.csv:4: unknown theme 'Nope'")
    assert result.problems[2].startswith("subscribers/main.csv:5: unknown time zone 'Mars/Olympus'")
    assert result.problems[3].startswith("subscribers/main.csv:6: invalid address 'zoë@example.org'")


def test_unknown_themes_allowed_without_known_list(folder: Path) -> None:
    write(folder / "a.csv", "email,themes\na@example.org,Anything;Else\n")
    assert load_lists(folder, None).subscribers[0].themes == frozenset({"Anything", "Else"})


def test_duplicates_across_files_keep_the_first(folder: Path) -> None:
    write(folder / "a.csv", "email,name\nbob@example.org,First\n")
    write(folder / "b.csv", "email,name\nann@example.org,Ann\nBOB@EXAMPLE.org,Second\n")
    result = load_lists(folder, None)
    assert [(s.email, s.name) for s in result.subscribers] == [
        ("bob@example.org", "First"),
        ("ann@example.org", "Ann"),
    ]
    assert result.problems == (
        "subscribers/b.csv:3: duplicate address 'BOB@example.org' (first in subscribers/a.csv:2)",
    )


def test_file_level_problems(folder: Path, tmp_path: Path) -> None:
    write(folder / "noheader.csv", "bob@example.org,Bob\n")
    (folder / "latin1.csv").write_bytes("email,name\nx@example.org,Jos\xe9\n".encode("latin-1"))
    write(folder / "good.csv", "\ufeffemail,name\ngood@example.org,Good\n")
    result = load_lists(folder, None)
    assert [s.email for s in result.subscribers] == ["good@example.org"]
    assert any(p.startswith("subscribers/noheader.csv: line 1: the header row") for p in result.problems)
    assert any(p.startswith("subscribers/latin1.csv: not UTF-8") for p in result.problems)
    assert load_lists(tmp_path / "missing", None).problems[0].endswith("no such folder")


def test_committed_example_loads() -> None:
    result = load_lists(EXAMPLE.parent, None)
    assert result.problems == ()
    assert len(result.subscribers) >= 2


def test_active_subscribers_store_status_wins() -> None:
    subs = [Subscriber("Ann@example.org"), Subscriber("bob@example.org"), Subscriber("cy@example.org")]
    statuses = {
        "ann@example.org": SubscriberStatus.UNSUBSCRIBED,
        "bob@example.org": SubscriberStatus.ACTIVE,
        "cy@example.org": SubscriberStatus.BOUNCED,
    }
    assert [s.email for s in active_subscribers(subs, statuses)] == ["bob@example.org"]
    assert len(active_subscribers(subs, {})) == 3


def test_add_creates_file_and_refuses_duplicates(folder: Path) -> None:
    target = folder / "main.csv"
    sub = add_subscriber(target, "Ann@Example.org", "Ann", ["Policy"], "Asia/Shanghai")
    assert sub.email == "Ann@example.org"
    add_subscriber(target, "bob@example.org", 'Bob "the, builder"', "", None)
    assert target.read_text().splitlines()[0] == "email,name,themes,timezone"
    write(folder / "other.csv", "email\ncy@example.org\n")
    for dup in ("ann@EXAMPLE.org", "CY@example.org"):
        with pytest.raises(SubscriberError, match="already subscribed"):
            add_subscriber(target, dup)
    with pytest.raises(SubscriberError, match="unknown theme"):
        add_subscriber(target, "dee@example.org", themes="Nope", known_themes=THEMES)
    with pytest.raises(SubscriberError, match="invalid address"):
        add_subscriber(target, "not-an-address")
    loaded = load_lists(folder, THEMES)
    assert loaded.problems == ()
    assert [(s.email, s.name) for s in loaded.subscribers] == [
        ("Ann@example.org", "Ann"),
        ("bob@example.org", 'Bob "the, builder"'),
        ("cy@example.org", ""),
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["main.csv", "other.csv"]  # no temp files left


def test_add_appends_to_file_without_final_newline(folder: Path) -> None:
    target = write(folder / "main.csv", "email,name\nann@example.org,Ann")
    add_subscriber(target, "bob@example.org", "Bob")
    assert [s.email for s in load_lists(folder, None).subscribers] == ["ann@example.org", "bob@example.org"]


def test_remove_keeps_other_rows_verbatim(folder: Path) -> None:
    a = write(folder / "a.csv", "email,name\n# a comment\nann@example.org,Ann\n")
    b = write(
        folder / "b.csv",
        'email,name,themes\n"bob@example.org","Bob, ""the""\nbuilder",Policy\n'
        "Bob@Example.org,dup,\ncy@example.org,Cy,\n",
    )
    assert remove_subscriber(folder, "BOB@example.ORG") is True
    assert a.read_text() == "email,name\n# a comment\nann@example.org,Ann\n"
    assert b.read_text() == "email,name,themes\ncy@example.org,Cy,\n"
    assert remove_subscriber(folder, "bob@example.org") is False
    assert remove_subscriber(folder, "nobody@example.org") is False
    assert [s.email for s in load_lists(folder, None).subscribers] == ["ann@example.org", "cy@example.org"]


def test_import_headerless_with_extra_columns(folder: Path, tmp_path: Path) -> None:
    dest = write(folder / "main.csv", "email,name,themes,timezone\nann@example.org,Ann,,\n")
    src = write(
        tmp_path / "export.csv",
        "new@example.org,New Person,Policy,Europe/Paris,extra,columns\n"
        "ANN@example.org,Ann Again,,\n"
        "broken@,Broken,,\n"
        "new@EXAMPLE.org,Repeated,,\n"
        "two@example.org,Two\n",
    )
    result = import_file(src, dest, THEMES)
    assert (result.added, result.skipped_duplicates) == (2, 2)
    assert len(result.problems) == 1 and result.problems[0].startswith(f"{src}:3: invalid address 'broken@'")
    loaded = load_lists(folder, THEMES)
    assert loaded.problems == ()
    assert [(s.email, s.name, s.themes, s.timezone) for s in loaded.subscribers] == [
        ("ann@example.org", "Ann", frozenset(), None),
        ("new@example.org", "New Person", frozenset({"Policy"}), "Europe/Paris"),
        ("two@example.org", "Two", frozenset(), None),
    ]


def test_import_with_header_aliases(folder: Path, tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", "Full Name,E-mail,Signup date\nAnn,ann@example.org,2018-01-01\n")
    result = import_file(src, folder / "new.csv", None)
    assert (result.added, result.skipped_duplicates, result.problems) == (1, 0, ())
    assert load_lists(folder, None).subscribers == (Subscriber("ann@example.org", "Ann"),)


def test_import_without_email_column(folder: Path, tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", "name,city\nAnn,Berlin\n")
    result = import_file(src, folder / "new.csv", None)
    assert result.added == 0 and "header row" in result.problems[0]
    assert not (folder / "new.csv").exists()


@pytest.mark.parametrize(
    "raw",
    [
        "a@b.org",
        "A.B@Example.ORG",
        "a+tag@sub.example.co.uk",
        "o'brien@x.org",
        "a@xn--bcher-kva.de",
        "a..b@x.org",
        ".a@x.org",
        "a.@x.org",
        "a@-x.org",
        "a@x-.org",
        "a@x.123",
        "x@localhost",
        "a@b..org",
        "a b@x.org",
        "user@example.invalid",
        "a@x.local",
        "a@x.test",
        "a@bücher.de",
        "a" * 64 + "@x.org",
    ],
)
def test_the_plain_address_shortcut_agrees_with_email_validator(raw: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    try:
        info = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        with pytest.raises(SubscriberError):
            normalise_email(raw)
    else:
        assert normalise_email(raw) == f"{raw.rsplit('@', 1)[0]}@{info.ascii_domain.lower()}"


# -- hostile rows beside good ones ------------------------------------------------


def test_a_duplicated_column_whose_cells_disagree_is_a_row_error(folder: Path) -> None:
    write(
        folder / "main.csv",
        "email,name,E-mail,name\n"
        "ann@example.org,Ann,,\n"  # the second email cell empty: no doubt
        "bob@example.org,Bob,eve@example.org,\n"  # which address is meant?
        "cy@example.org,Cy,cy@example.org,Cy\n"  # the same twice: no doubt
        "dee@example.org,Dee,,Deirdre\n"
        "fay@example.org,Fay,,\n",
    )
    result = load_lists(folder, None)
    assert [(s.email, s.name) for s in result.subscribers] == [
        ("ann@example.org", "Ann"),
        ("cy@example.org", "Cy"),
        ("fay@example.org", "Fay"),
    ]
    assert result.problems == (
        "subscribers/main.csv:3: duplicated column 'email'",
        "subscribers/main.csv:5: duplicated column 'name'",
    )


@pytest.mark.parametrize(
    ("bad_row", "problem"),
    [
        ('ann@example.org,"Ann\n', "unterminated quote"),
        ('"ann@example.org,Ann\n', "unterminated quote"),
        ('ann@example.org,"Ann" Example\n', "not valid CSV: ',' expected after '\"'"),
    ],
)
def test_a_broken_quote_is_a_row_error_and_later_rows_still_load(folder: Path, bad_row: str, problem: str) -> None:
    path = write(
        folder / "main.csv",
        "email,name\nfirst@example.org,First\n"
        + bad_row
        + 'bob@example.org,"Bob, ""the"" Builder"\ncy@example.org,Cy\n',
    )
    result = load_lists(folder, None)
    assert [(s.email, s.name) for s in result.subscribers] == [
        ("first@example.org", "First"),
        ("bob@example.org", 'Bob, "the" Builder'),
        ("cy@example.org", "Cy"),
    ]
    assert result.problems == (f"subscribers/main.csv:3: {problem}",)
    # Rewriting the file (a remove) keeps the broken row as it was written.
    assert remove_subscriber(folder, "cy@example.org") is True
    assert (
        path.read_text(encoding="utf-8")
        == "email,name\nfirst@example.org,First\n" + bad_row + 'bob@example.org,"Bob, ""the"" Builder"\n'
    )


def test_a_quoted_multi_line_cell_that_is_closed_is_fine(folder: Path) -> None:
    write(folder / "main.csv", 'email,name\n"ann@example.org","Ann\nExample"\nbob@example.org,Bob\n')
    result = load_lists(folder, None)
    assert result.problems == ()
    assert [(s.email, s.name) for s in result.subscribers] == [
        ("ann@example.org", "Ann Example"),
        ("bob@example.org", "Bob"),
    ]


def test_a_broken_header_is_a_file_error(folder: Path) -> None:
    write(folder / "bad.csv", 'email,"name\nann@example.org,Ann\n')
    write(folder / "good.csv", "email\ngood@example.org\n")
    result = load_lists(folder, None)
    assert [s.email for s in result.subscribers] == ["good@example.org"]
    assert result.problems == ("subscribers/bad.csv: line 1: unterminated quote",)


def test_a_local_part_over_64_octets_is_a_row_error(folder: Path) -> None:
    write(
        folder / "main.csv",
        "email,name\n"
        + "a" * 64 + "@example.org,Longest allowed\n"
        + "b" * 65 + "@example.org,One too long\n"
        + "ü" * 33 + "@example.org,66 octets in 33 characters\n"
        + "ok@example.org,Ok\n",
    )  # fmt: skip
    result = load_lists(folder, None)
    assert [s.email for s in result.subscribers] == ["a" * 64 + "@example.org", "ok@example.org"]
    assert result.problems == (
        f"subscribers/main.csv:3: invalid address '{'b' * 65}@example.org': the part before the @ is 65 octets,"
        " at most 64",
        f"subscribers/main.csv:4: invalid address '{'ü' * 33}@example.org': the part before the @ is 66 octets,"
        " at most 64",
    )
    with pytest.raises(SubscriberError, match="65 octets"):
        add_subscriber(folder / "main.csv", "c" * 65 + "@example.org")


def test_import_reports_hostile_rows_by_file_and_line(folder: Path, tmp_path: Path) -> None:
    src = write(
        tmp_path / "in.csv",
        "email,name,email\n"
        "new@example.org,New,\n"
        "two@example.org,Two,other@example.org\n"
        + "x" * 65 + "@example.org,Long,\n"
        + 'open@example.org,"Open\n'
        + "last@example.org,Last,\n",
    )  # fmt: skip
    result = import_file(src, folder / "main.csv", None)
    assert result.added == 2
    assert result.problems == (
        f"{src}:3: duplicated column 'email'",
        f"{src}:4: invalid address '{'x' * 65}@example.org': the part before the @ is 65 octets, at most 64",
        f"{src}:5: unterminated quote",
    )
    assert [s.email for s in load_lists(folder, None).subscribers] == ["new@example.org", "last@example.org"]


def test_a_repeated_theme_or_zone_cell_is_checked_for_every_row_and_chosen_themes_are_shared(folder: Path) -> None:
    write(
        folder / "a.csv",
        "email,name,themes,timezone\n"
        "a@x.org,Ann,ai policy;Cyber,Europe/Berlin\n"
        "b@x.org,Bob,Nope,\n"
        "c@x.org,Cy,ai policy;Cyber,Mars/Base\n"
        "d@x.org,Di,Nope,\n"
        "e@x.org,Ed,ai policy;Cyber,Mars/Base\n"
        "f@x.org,  Fi\t \x00\x7fLo  ,ai policy;Cyber,Europe/Berlin\n",
    )
    result = load_lists(folder, ["AI policy", "Cyber"])
    assert [(s.email, s.name, s.timezone) for s in result.subscribers] == [
        ("a@x.org", "Ann", "Europe/Berlin"),
        ("f@x.org", "Fi Lo", "Europe/Berlin"),
    ]
    a, f = result.subscribers
    assert a.themes == frozenset({"AI policy", "Cyber"}) and a.themes is f.themes
    assert result.problems == (
        "subscribers/a.csv:3: unknown theme 'Nope' (known: AI policy, Cyber)",
        "subscribers/a.csv:4: unknown time zone 'Mars/Base' (use an IANA name like Europe/Berlin)",
        "subscribers/a.csv:5: unknown theme 'Nope' (known: AI policy, Cyber)",
        "subscribers/a.csv:6: unknown time zone 'Mars/Base' (use an IANA name like Europe/Berlin)",
    )


def test_email_key_is_the_lowercased_address_and_the_same_string_when_it_already_is() -> None:
    plain = "reader@example.org"
    assert email_key(plain) is plain
    assert email_key("Reader@Example.ORG") == plain
