"""NPS/CES from a survey tool's CSV export and from mapped custom fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpi_core.cli import main
from kpi_core.model import email_hash
from kpi_core.settings import SurveyMapping
from kpi_core.store import Store
from kpi_core.surveys import apply_mappings, import_csv

KEY = b"test-hash-key"


@pytest.fixture
def store(store: Store) -> Store:
    """conftest's fresh store, with one customer whose e-mail hash the imports match."""
    store.upsert("people", [{"source": "zendesk", "source_id": "77", "role": "customer",
                             "email_hash": email_hash("Ana@Example.org ", KEY)}])
    return store


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nps.csv"
    path.write_text(text)
    return path


def rows(store: Store) -> list[tuple]:
    return store.db.execute(
        "SELECT source, kind, score, scale, is_positive, created_at, requester_id FROM survey_responses ORDER BY score"
    ).fetchall()


def test_import_is_idempotent_and_matches_people_by_hashed_address(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "id,score,responded_at,email\nr1,10,2026-03-01T10:00:00Z,ana@example.org\n"
                               "r2,6,2026-03-02,someone@else.net\nr3,8,2026-03-03 08:00:00,\n")
    first = import_csv(store, path, kind="nps", scale="0-10", hash_key=KEY)
    again = import_csv(store, path, kind="nps", scale="0-10", hash_key=KEY)
    assert (first.rows, first.stored, first.matched_people, first.skipped) == (3, 3, 1, [])
    assert again.stored == 3
    assert rows(store) == [
        ("import", "nps", 6.0, "0-10", 0, "2026-03-02T00:00:00Z", None),
        ("import", "nps", 8.0, "0-10", 0, "2026-03-03T08:00:00Z", None),
        ("zendesk", "nps", 10.0, "0-10", 1, "2026-03-01T10:00:00Z", "77"),
    ]
    assert b"ana@example.org" not in (tmp_path / "kpi.sqlite").read_bytes()


def test_rows_without_an_id_are_keyed_by_content(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "score,date\n5,2026-03-01\n7,2026-03-01\n")
    import_csv(store, path, kind="ces", scale="1-7")
    import_csv(store, path, kind="ces", scale="1-7")
    assert [r[2] for r in rows(store)] == [5.0, 7.0]


def test_bad_rows_are_skipped_with_file_and_line(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path, "id,score,date\na,11,2026-03-01\nb,x,2026-03-01\nc,3,\nd,9,2026-03-01\n")
    result = import_csv(store, path, kind="nps", scale="0-10")
    assert result.stored == 1
    assert result.skipped == [f"{path}:2: score 11 is outside the 0-10 scale",
                              f"{path}:3: score 'x' is not a number",
                              f"{path}:4: no time column (responded_at, created_at, submitted_at, date, timestamp)"]


def test_cli_import_reports_and_exits_1_when_rows_were_skipped(store: Store, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "kpi.sqlite"}"\n')
    good = write_csv(tmp_path, "id,score,date\na,9,2026-03-01\n")
    assert main(["surveys", "import", str(good), "--kind", "nps", "--scale", "0-10", "--config", str(config)]) == 0
    assert "1 of 1 nps answers stored" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("id,score,date\na,99,2026-03-01\n")
    assert main(["surveys", "import", str(bad), "--kind", "nps", "--scale", "0-10", "--config", str(config)]) == 1


def test_mapped_ticket_and_person_fields_become_responses(store: Store) -> None:
    store.upsert("contacts", [
        {"source": "zendesk", "source_id": "1", "channel": "email", "status": "resolved",
         "created_at": "2026-03-01T09:00:00Z", "last_activity_at": "2026-03-02T09:00:00Z",
         "requester_id": "77", "custom": {"360001": 9}},
        {"source": "zendesk", "source_id": "2", "channel": "email", "status": "open",
         "created_at": "2026-03-01T09:00:00Z", "custom": {"360001": "eleven"}},
        {"source": "zendesk", "source_id": "3", "channel": "email", "status": "open",
         "created_at": "2026-03-01T09:00:00Z", "custom": {}},
    ])
    store.upsert("people", [{"source": "zendesk", "source_id": "78", "role": "customer", "custom": {"ces_score": 6}}])
    mappings = [SurveyMapping(kind="nps", scale="0-10", helpdesk="zendesk", location="ticket_field", field="360001"),
                SurveyMapping(kind="ces", scale="1-7", helpdesk="zendesk", location="person_field", field="ces_score"),
                SurveyMapping(kind="nps", scale="0-10", helpdesk="intercom", location="ticket_field", field="x")]
    assert apply_mappings(store, mappings, "zendesk") == 2
    first_seen = store.db.execute("SELECT created_at FROM survey_responses WHERE kind = 'ces'").fetchone()[0]
    assert apply_mappings(store, mappings, "zendesk") == 2
    got = store.db.execute("SELECT kind, score, is_positive, contact_id, requester_id, created_at FROM survey_responses"
                           " ORDER BY kind").fetchall()
    assert got == [("ces", 6.0, 1, None, "78", first_seen), ("nps", 9.0, 1, "1", "77", "2026-03-02T09:00:00Z")]
    quarantined = store.db.execute("SELECT record_id, error FROM quarantine").fetchall()
    assert quarantined == [("2", "score 'eleven' is not a number")]
