"""Zendesk write-back: ticket, user and organization fields, and private ticket notes (reference §1.5).

- Ticket fields go in bulk: `PUT /api/v2/tickets/update_many.json` with
  `{"tickets": [{"id", "custom_fields": [{"id", "value"}]}]}`, up to 100 tickets with their
  own values per job. The answer is a job; `GET /api/v2/job_statuses/{id}` is polled until
  it is `completed` or `failed`, and its `results` say ticket by ticket what happened. A
  job that never finishes within the polls is reported as failed for all its tickets,
  which is safe: the write sets absolute values, so sending it again changes nothing twice.
- User and organization fields have no per-record bulk form here: one
  `PUT /users/{id}` (`user_fields`) or `PUT /organizations/{id}` (`organization_fields`)
  per record. Both are keyed by the field's `key`; ticket fields by their numeric `id`.
- A private note is a comment on a ticket update, `{"comment": {"body", "public": false}}`
  (Zendesk has no endpoint that only adds a comment). It is never repeated (see
  `connectors.writing`).
- Closed tickets refuse every update (422 "Status: closed prevents ticket update"); the
  planner never sends them, and a ticket closed since the last sync fails alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from connectors.base import (
    AuthError,
    FatalApiError,
    FieldDef,
    FieldNotCreatable,
    FieldSpec,
    MalformedResponse,
    PermissionDenied,
    RetryableApiError,
    WriteRequest,
    WriteResult,
)
from connectors.writing import HttpWriter, attempt, attempt_note
from connectors.zendesk.client import client
from connectors.zendesk.settings import ZendeskSettings

BULK_MAX = 100
DONE = frozenset({"completed", "failed"})
# Which field list and payload key belong to each object.
FIELD_PATHS = {"ticket": "ticket_fields", "user": "user_fields", "organization": "organization_fields"}
VENDOR_TYPES: dict[str, str] = {
    "text": "text", "textarea": "text", "regexp": "text", "integer": "integer", "decimal": "number",
    "checkbox": "checkbox", "tagger": "dropdown", "dropdown": "dropdown", "date": "date",
}
CREATE_TYPES = {"text": "text", "integer": "integer", "number": "decimal", "checkbox": "checkbox"}


class ZendeskWriter(HttpWriter):
    """Writes custom field values and private notes into a Zendesk Support account."""

    name: ClassVar[str] = "zendesk"
    objects: ClassVar[tuple[str, ...]] = ("ticket", "user", "organization")

    def __init__(self, settings: ZendeskSettings, *, poll_interval: float = 1.0, max_polls: int = 120,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client(settings)
        self.poll_interval = poll_interval
        self.max_polls = max_polls
        self.sleep = sleep
        self.job_polls = 0

    # --- field definitions -----------------------------------------------------------------

    def field_definitions(self, object: str) -> list[FieldDef]:
        key = FIELD_PATHS[object]
        out: list[FieldDef] = []
        path: str | None = f"/api/v2/{key}.json"
        while path:
            data = self.client.get(path).data
            if not isinstance(data, dict) or not isinstance(data.get(key), list):
                raise MalformedResponse(f"zendesk: GET /api/v2/{key}.json: no {key} list in the answer")
            out.extend(_field_def(object, item) for item in data[key]
                       if isinstance(item, dict) and item.get("active", True))
            path = data.get("next_page") or None
        return out

    def create_field(self, spec: FieldSpec) -> FieldDef:
        vendor = CREATE_TYPES[spec.type]
        kind = FIELD_PATHS[spec.object]
        if spec.object == "ticket":
            # Ticket fields are addressed by a numeric id Zendesk assigns; the title is how a
            # mapping names a field it created.
            if spec.key.isdigit():
                raise FieldNotCreatable(f"zendesk: ticket field {spec.key}: Zendesk assigns ticket field ids; name the"
                                        " field by a title instead and it will be created with that title")
            body: dict[str, Any] = {"type": vendor, "title": spec.key, "description": spec.title}
        else:
            if not spec.key.replace("_", "").isalnum() or spec.key.isdigit():
                raise FieldNotCreatable(f"zendesk: {spec.object} field key {spec.key!r}: use letters, digits and"
                                        " underscores, not only digits")
            body = {"type": vendor, "title": spec.title, "key": spec.key}
        data = self.client.request("POST", f"/api/v2/{kind}.json", json_body={kind[:-1]: body}, idempotent=False).data
        created = data.get(kind[:-1]) if isinstance(data, dict) else None
        if not isinstance(created, dict):
            raise MalformedResponse(f"zendesk: POST /api/v2/{kind}.json: no {kind[:-1]} in the answer")
        return _field_def(spec.object, created)

    # --- writes ------------------------------------------------------------------------------

    def batch_size(self, object: str) -> int:
        return BULK_MAX if object == "ticket" else 1

    def write(self, object: str, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        if object == "ticket":
            return self._update_many(requests)
        (request,) = requests
        if object == "user":
            body: dict[str, Any] = {"user": {"user_fields": dict(request.fields)}}
            path = f"/api/v2/users/{request.record_id}.json"
        elif object == "organization":
            body = {"organization": {"organization_fields": dict(request.fields)}}
            path = f"/api/v2/organizations/{request.record_id}.json"
        else:
            raise ValueError(f"zendesk: cannot write {object!r}")
        return [attempt(request, lambda: self.client.request("PUT", path, json_body=body))]

    def add_note(self, request: WriteRequest) -> WriteResult:
        body = {"ticket": {"comment": {"body": request.note, "public": False}}}
        return attempt_note(self.client, request, "PUT", f"/api/v2/tickets/{request.record_id}.json", body, self.sleep)

    def _update_many(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        if len(requests) > BULK_MAX:
            raise ValueError(f"zendesk: update_many takes at most {BULK_MAX} tickets")
        try:
            tickets = [{"id": int(r.record_id),
                        "custom_fields": [{"id": int(k), "value": v} for k, v in r.fields.items()]} for r in requests]
        except ValueError:
            return [WriteResult(r, False, "zendesk: ticket and ticket field ids must be numbers") for r in requests]
        try:
            data = self.client.request("PUT", "/api/v2/tickets/update_many.json", json_body={"tickets": tickets}).data
            job = _job(data, "PUT /api/v2/tickets/update_many.json")
            job = self._wait_for(job)
        except (AuthError, PermissionDenied):
            raise
        except (FatalApiError, RetryableApiError, MalformedResponse) as exc:
            return [WriteResult(r, False, str(exc)) for r in requests]
        return _job_results(job, requests)

    def _wait_for(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        """Poll the job's status until it is done, or give up after `max_polls`."""
        polls = 0
        while job.get("status") not in DONE and polls < self.max_polls:
            self.sleep(self.poll_interval)
            path = f"/api/v2/job_statuses/{job['id']}.json"
            job = _job(self.client.get(path).data, f"GET {path}")
            polls += 1
            self.job_polls += 1
        return job


def _field_def(object: str, item: Mapping[str, Any]) -> FieldDef:
    vendor = str(item.get("type"))
    options = tuple(str(o.get("value")) for o in item.get("custom_field_options") or () if isinstance(o, dict))
    if object == "ticket":
        system = item.get("removable") is False  # subject, status, assignee...: Zendesk's own fields
        return FieldDef(object, str(item["id"]), VENDOR_TYPES.get(vendor, "other"), vendor,
                        str(item.get("title") or ""), options, writable=not system and vendor in VENDOR_TYPES)
    return FieldDef(object, str(item["key"]), VENDOR_TYPES.get(vendor, "other"), vendor, str(item.get("title") or ""),
                    options, writable=not item.get("system") and vendor in VENDOR_TYPES)


def _job(data: Any, where: str) -> Mapping[str, Any]:
    job = data.get("job_status") if isinstance(data, dict) else None
    if not isinstance(job, dict) or "id" not in job:
        raise MalformedResponse(f"zendesk: {where}: no job_status in the answer")
    return job


def _job_results(job: Mapping[str, Any], requests: Sequence[WriteRequest]) -> list[WriteResult]:
    """Ticket-by-ticket outcome of a finished job; a ticket the job does not mention failed."""
    status = job.get("status")
    if status not in DONE:
        message = f"zendesk: job {job.get('id')} still {status} after polling; sent again next time"
        return [WriteResult(r, False, message) for r in requests]
    by_id: dict[str, Mapping[str, Any]] = {}
    for item in job.get("results") or ():
        if isinstance(item, dict) and item.get("id") is not None:
            by_id[str(item["id"])] = item
    out = []
    for request in requests:
        item = by_id.get(request.record_id)
        if item is None:
            reason = job.get("message") or ("the job failed" if status == "failed" else "no result for this ticket")
            out.append(WriteResult(request, False, f"zendesk: job {job.get('id')}: {reason}"))
        elif item.get("success") is False or item.get("error"):
            detail = item.get("details") or item.get("errors") or item.get("error") or item.get("status")
            out.append(WriteResult(request, False, f"zendesk: ticket {request.record_id}: {detail}"))
        else:
            out.append(WriteResult(request, True))
    return out
