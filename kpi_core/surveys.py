"""NPS and CES (and extra CSAT) answers that no helpdesk API offers as surveys.

They are read from where the admin's config says they live:
- a ticket custom field or a person custom attribute that an NPS tool writes
  (`[[surveys.mappings]]`, applied to the store after each sync of that helpdesk);
- a Freshdesk custom-survey question (mapped by the Freshdesk connector itself);
- a CSV export of the survey tool (`helpdesk-kpi surveys import`), re-importable without
  duplicates: a row's id (or, without one, its content) is its key. UTF-8 (with or without
  BOM) and UTF-16, separated by `,`, `;` or tab (`kpi_core.csv_files`).
Every response keeps its own scale; positives are derived with the catalogue's rule.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kpi_core.csv_files import CsvFileError, number_text, read_text
from kpi_core.model import SCALES, RecordError, email_hash, is_positive_response, iso_utc
from kpi_core.settings import SurveyMapping
from kpi_core.store import Store, utc_now

log = logging.getLogger(__name__)

_TIME_COLUMNS = ("responded_at", "created_at", "submitted_at", "date", "timestamp")


class SurveyFileError(ValueError):
    """A survey file that cannot be imported at all (unreadable, no score column, unknown scale)."""


@dataclass
class ImportResult:
    rows: int = 0
    stored: int = 0
    matched_people: int = 0
    skipped: list[str] = field(default_factory=list)


def import_csv(store: Store, path: Path, *, kind: str, scale: str, source: str = "import",
               hash_key: bytes | None = None) -> ImportResult:
    """Store the answers of a survey tool's CSV export; returns what was stored and skipped."""
    if scale not in SCALES:
        raise SurveyFileError(f"--scale {scale}: unknown scale; one of {', '.join(SCALES)}")
    result = ImportResult()
    rows: list[dict[str, Any]] = []
    try:
        table = read_text(path)
    except CsvFileError as exc:
        raise SurveyFileError(str(exc)) from None
    reader = table.reader()
    if reader.fieldnames is None or "score" not in {c.strip().lower() for c in reader.fieldnames}:
        raise SurveyFileError(f"{path}: no 'score' column (columns: {', '.join(reader.fieldnames or []) or 'none'})")
    for raw in reader:
        result.rows += 1
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        row["score"] = number_text(row.get("score", ""), table.separator)
        try:
            rows.append(_survey_row(store, row, kind=kind, scale=scale, source=source, hash_key=hash_key))
        except RecordError as exc:
            result.skipped.append(f"{path}:{reader.line_num}: {exc}")
    with store.db.atomic():
        result.stored = store.upsert("survey_responses", rows)
    result.matched_people = sum(1 for r in rows if r.get("requester_id"))
    return result


def _survey_row(store: Store, row: dict[str, str], *, kind: str, scale: str, source: str,
                hash_key: bytes | None) -> dict[str, Any]:
    score = _score(row.get("score", ""), scale)
    when = next((row[c] for c in _TIME_COLUMNS if row.get(c)), None)
    if when is None:
        raise RecordError(f"no time column ({', '.join(_TIME_COLUMNS)})")
    created_at = iso_utc(when if "T" in when or " " in when else when + "T00:00:00Z")
    requester_id, requester_source = _requester(store, row, hash_key)
    key = row.get("id") or row.get("response_id") or hashlib.sha256(
        "|".join([kind, created_at or "", str(score), row.get("email", ""), row.get("requester_id", "")]).encode()
    ).hexdigest()[:32]
    # A matched answer joins its helpdesk's records (so per-customer KPIs see it); an
    # unmatched one stays under the import's own source name.
    return {
        "source": requester_source or source, "source_id": f"{source}:{kind}:{key}", "kind": kind, "score": score,
        "scale": scale, "is_positive": is_positive_response(kind, score, scale), "created_at": created_at,
        "requester_id": requester_id, "contact_id": row.get("ticket_id") or None,
    }


def _score(text: str, scale: str) -> float:
    try:
        score = float(text)
    except ValueError:
        raise RecordError(f"score {text!r} is not a number") from None
    low, high = SCALES[scale]
    if not low <= score <= high:
        raise RecordError(f"score {score:g} is outside the {scale} scale")
    return score


def _requester(store: Store, row: dict[str, str], hash_key: bytes | None) -> tuple[str | None, str | None]:
    """The helpdesk person behind an answer: a given id, or a match on the hashed address."""
    if row.get("requester_id") and row.get("helpdesk"):
        return row["requester_id"], row["helpdesk"]
    address = row.get("email")
    if address and hash_key:
        match = store.db.execute(
            "SELECT source, source_id FROM people WHERE email_hash = ? LIMIT 1", [email_hash(address, hash_key)]
        ).fetchone()
        if match:
            return match[1], match[0]
    return None, None


_FIELD_SQL = {
    "ticket_field": (
        "SELECT source_id, requester_id, assignee_id, json_extract(custom, :path) AS answer,"
        " coalesce(last_activity_at, created_at) AS seen_at, source_id AS contact_id"
        " FROM contacts WHERE source = :source AND status NOT IN ('deleted', 'merged')"
        " AND json_extract(custom, :path) IS NOT NULL"
    ),
    "person_field": (
        "SELECT source_id, source_id AS requester_id, NULL AS assignee_id, json_extract(custom, :path) AS answer,"
        " :now AS seen_at, NULL AS contact_id"
        " FROM people WHERE source = :source AND json_extract(custom, :path) IS NOT NULL"
    ),
}


def apply_mappings(store: Store, mappings: Iterable[SurveyMapping], source: str) -> int:
    """Turn the mapped custom fields of `source` into survey responses; returns how many."""
    count = 0
    for mapping in mappings:
        if mapping.helpdesk != source:
            continue
        params = {"source": source, "path": f'$."{mapping.field}"', "now": utc_now()}
        rows = []
        for source_id, requester_id, agent_id, answer, seen_at, contact_id in store.db.execute(
            _FIELD_SQL[mapping.location], params
        ).fetchall():
            try:
                score = _score(str(answer), mapping.scale)
            except RecordError as exc:
                store.quarantine(source, f"surveys:{mapping.field}", source_id, str(exc))
                continue
            rows.append(_mapped_row(mapping, source, source_id, score, seen_at, contact_id, requester_id, agent_id))
        count += _upsert_keeping_first_seen(store, rows)
    return count


def _mapped_row(mapping: SurveyMapping, source: str, record_id: str, score: float, seen_at: str,
                contact_id: str | None, requester_id: str | None, agent_id: str | None) -> dict[str, Any]:
    return {
        "source": source, "source_id": f"{mapping.kind}:{mapping.location}:{mapping.field}:{record_id}",
        "kind": mapping.kind, "score": score, "scale": mapping.scale,
        "is_positive": is_positive_response(mapping.kind, score, mapping.scale), "created_at": seen_at,
        "contact_id": contact_id, "requester_id": requester_id, "agent_id": agent_id, "question": mapping.field,
    }


def _upsert_keeping_first_seen(store: Store, rows: list[dict[str, Any]]) -> int:
    """An unchanged answer keeps the time it was first seen; a changed one is dated anew."""
    if not rows:
        return 0
    with store.db.atomic():
        existing = {
            r[0]: r[1:] for r in store.db.execute(
                "SELECT source_id, score, created_at FROM survey_responses WHERE source = ? AND source_id IN "
                "(SELECT value FROM json_each(?))", [rows[0]["source"], _json([r["source_id"] for r in rows])]
            ).fetchall()
        }
        for row in rows:
            previous = existing.get(row["source_id"])
            if previous and previous[0] == row["score"]:
                row["created_at"] = previous[1]
        return store.upsert("survey_responses", rows)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
