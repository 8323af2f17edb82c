"""``digest subscribers export`` and ``digest subscribers forget``, run as the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from digest import pipeline
from digest.models import IsoWeek, SubscriberStatus
from digest.store import BounceEvent, Consent
from digest.store import schema as s
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer

READER = "r001@example.org"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", ws.SECRET)


def sent_site(tmp_path: Path, smtp: SmtpServer) -> Path:
    path = ws.make_folder(
        tmp_path, ws.rows(4), port=smtp.port, extra='\n[bounces]\naddress = "bounces@example.org"\nverp = true\n'
    )
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        pipeline.fetch_all(config, store, ws.RUN_NOW)
        pipeline.send_issue(config, store, (IsoWeek(2018, 2),), clock=ws.fixed_clock())
        store.record_bounce("report-1", BounceEvent(READER, "2018-W02", "soft", "4.2.2", "mailbox full", ws.RUN_NOW))
        store.set_theme_choice(READER, ["Cybersecurity"], ws.RUN_NOW)
        store.record_verp_tags("2018-W02", [(READER, "tag-of-r001"), ("r000@example.org", "tag-of-r000")])
        store.add_consent(Consent(READER, "preferences", ws.RUN_NOW, "ab" * 32, '{"themes": ["Cybersecurity"]}'))
    return path


def export(path: Path, email: str) -> dict[str, object]:
    out = ws.run_cli(path, "subscribers", "export", email, "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_export_shows_everything_held_and_forget_erases_it(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = sent_site(tmp_path, smtp_server)
    data = export(path, READER.upper().replace("EXAMPLE.ORG", "example.org"))
    assert data["email"] == READER and data["forgotten"] is False
    assert data["lists"] == [
        {
            "file": "subscribers/subscribers.csv",
            "line": 3,
            "email": READER,
            "name": ws.rows(4)[1].name,
            "themes": ws.rows(4)[1].themes,
            "timezone": "",
        }
    ]
    assert data["theme_choice"] == ["Cybersecurity"]
    assert [c["kind"] for c in data["consents"]] == ["preferences"]  # type: ignore[attr-defined, index]
    assert [(r["issue"], r["state"]) for r in data["ledger"]] == [("2018-W02", "sent")]  # type: ignore[attr-defined, index]
    assert [b["status"] for b in data["bounces"]] == ["4.2.2"]  # type: ignore[attr-defined, index]
    config = ws.load(path)
    with pipeline.open_store(config) as store, store._read() as conn:
        assert conn.execute(select(s.verp_tags.c.tag).where(s.verp_tags.c.email == READER)).first() is not None

    out = ws.run_cli(path, "subscribers", "forget", READER)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"forgot {READER}: list rows")
    csv_text = (path.parent / "subscribers" / "subscribers.csv").read_text()
    assert READER not in csv_text and "r000@example.org" in csv_text
    with pipeline.open_store(config) as store:
        with store._read() as conn:
            for table in (
                s.web_subscribers,
                s.confirm_tokens,
                s.consents,
                s.theme_choices,
                s.subscriber_status,
                s.bounce_events,
                s.verp_tags,
                s.deliveries,
            ):
                rows = conn.execute(select(table)).fetchall()
                assert all(READER not in str(tuple(r)) for r in rows), table.name
            hashes = conn.execute(select(s.forgotten.c.hash)).scalars().all()
        # The ledger still adds up: the row stays under a pseudonym.
        assert len(store.deliveries("2018-W02")) == 4
        assert sum(d.email.startswith("forgotten:") for d in store.deliveries("2018-W02")) == 1
        assert store.verp_lookup("tag-of-r000") == ("2018-W02", "r000@example.org")  # others' rows stay
    assert len(hashes) == 1 and READER not in hashes[0] and len(hashes[0]) == 64
    after = export(path, READER)
    assert after["forgotten"] is True
    assert after["lists"] == after["consents"] == after["ledger"] == after["bounces"] == []
    assert after["status"] is None and after["web"] is None and after["theme_choice"] is None

    # No list import brings them back, nor a hand-added row, nor `subscribers add`.
    src = tmp_path / "again.csv"
    src.write_text(f"email,name\n{READER.upper()},Back Again\nfresh@example.org,Fresh\n")
    imported = ws.run_cli(path, "subscribers", "import", str(src))
    assert imported.returncode == 1
    assert "asked to be forgotten" in imported.stderr + imported.stdout and "imported 1" in imported.stdout
    assert READER.upper() not in (path.parent / "subscribers" / "subscribers.csv").read_text()
    added = ws.run_cli(path, "subscribers", "add", READER)
    assert added.returncode == 2 and "forgotten" in added.stderr
    with (path.parent / "subscribers" / "subscribers.csv").open("a") as f:
        f.write(f"{READER},By Hand,,\n")
    with pipeline.open_store(config) as store:
        issue = pipeline.make_issue(config, store, (IsoWeek(2018, 2),))
        people = {sub.email for sub, _ in pipeline.audience(config, store, issue).assignments}
    assert READER not in people and "fresh@example.org" in people


def test_export_of_an_unknown_address_and_hostile_arguments(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = ws.make_folder(tmp_path, ws.rows(2), port=smtp_server.port)
    data = export(path, "nobody@example.org")
    assert data["lists"] == [] and data["status"] is None and data["forgotten"] is False
    for bad in ("not-an-address", "a@b@c", "x\nBcc: y@example.org"):
        for cmd in ("export", "forget"):
            out = ws.run_cli(path, "subscribers", cmd, bad)
            assert out.returncode == 2 and "invalid address" in out.stderr, (cmd, bad)
    plain = ws.run_cli(path, "subscribers", "export", "r000@example.org")
    assert plain.returncode == 0 and '"email": "r000@example.org"' in plain.stdout


def test_forget_keeps_a_complaint_from_coming_back(tmp_path: Path, smtp_server: SmtpServer) -> None:
    path = ws.make_folder(tmp_path, ws.rows(2), port=smtp_server.port)
    config = ws.load(path)
    with pipeline.open_store(config) as store:
        store.set_status("r000@example.org", SubscriberStatus.COMPLAINED, ws.RUN_NOW, "complaint", force=True)
        assert [c.kind for c in store.consents("r000@example.org")] == ["complaint"]
    assert ws.run_cli(path, "subscribers", "forget", "r000@example.org").returncode == 0
    with pipeline.open_store(config) as store:
        assert store.forgotten_check()("R000@Example.org")
        assert not store.forgotten_check()("r001@example.org")
        assert store.consents("r000@example.org") == []
