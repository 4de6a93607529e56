"""Freshdesk write-back: ticket, contact and company custom fields, and private ticket notes (reference §3.5).

- `PUT /api/v2/tickets/{id}`, `/contacts/{id}`, `/companies/{id}` with
  `{"custom_fields": {"cf_...": value}}`, one request per record: Freshdesk's
  `POST /tickets/bulk_update` sets the *same* values on many tickets, and per-record
  metrics almost never coincide (its job answer is undocumented as well).
- Field definitions: `GET /api/v2/ticket_fields`, `/contact_fields`, `/company_fields`
  (bare arrays). Creation takes an admin's key: `POST /api/v2/admin/ticket_fields`
  (`/contact_fields`, `/company_fields`). Freshdesk derives the field's `name` from its
  label (`cf_` + the label in lower case with underscores), so a field created for the
  mapping `cf_kpi_frt` is labelled `kpi_frt`.
- A private note: `POST /api/v2/tickets/{id}/notes` `{"body", "private": true}`, never repeated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from connectors.base import FieldDef, FieldSpec, MalformedResponse, WriteRequest, WriteResult
from connectors.freshdesk.client import client
from connectors.freshdesk.settings import FreshdeskSettings
from connectors.writing import HttpWriter, attempt, attempt_note, note_html

API = "/api/v2"
PLURAL = {"ticket": "tickets", "contact": "contacts", "company": "companies"}
VENDOR_TYPES: dict[str, str] = {
    "custom_text": "text", "custom_paragraph": "text", "custom_number": "integer", "custom_decimal": "number",
    "custom_checkbox": "checkbox", "custom_dropdown": "dropdown", "custom_date": "date",
}
CREATE_TYPES = {"text": "custom_text", "integer": "custom_number", "number": "custom_decimal",
                "checkbox": "custom_checkbox"}


class FreshdeskWriter(HttpWriter):
    """Writes custom field values and private notes into a Freshdesk account."""

    name: ClassVar[str] = "freshdesk"
    objects: ClassVar[tuple[str, ...]] = ("ticket", "contact", "company")

    def __init__(self, settings: FreshdeskSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client(settings, sleep=sleep)
        self.sleep = sleep

    # --- field definitions -----------------------------------------------------------------

    def field_definitions(self, object: str) -> list[FieldDef]:
        path = f"{API}/{object}_fields"
        data = self.client.get(path).data
        if not isinstance(data, list):
            raise MalformedResponse(f"freshdesk: GET {path}: the answer is not a list of fields")
        return [_field_def(object, item) for item in data if isinstance(item, dict)]

    def create_field(self, spec: FieldSpec) -> FieldDef:
        label = spec.key.removeprefix("cf_")
        body: dict[str, Any] = {"label": label, "type": CREATE_TYPES[spec.type]}
        if spec.object in ("ticket", "contact"):
            body["label_for_customers"] = label
        if spec.object == "ticket":
            body.update(customers_can_edit=False, displayed_to_customers=False, required_for_customers=False)
        path = f"{API}/admin/{spec.object}_fields"
        data = self.client.request("POST", path, json_body=body, idempotent=False).data
        if not isinstance(data, dict) or "name" not in data:
            raise MalformedResponse(f"freshdesk: POST {path}: no field in the answer")
        return _field_def(spec.object, data)

    # --- writes ------------------------------------------------------------------------------

    def batch_size(self, object: str) -> int:
        return 1

    def write(self, object: str, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        (request,) = requests
        if object not in PLURAL:
            raise ValueError(f"freshdesk: cannot write {object!r}")
        path = f"{API}/{PLURAL[object]}/{request.record_id}"
        body = {"custom_fields": dict(request.fields)}
        return [attempt(request, lambda: self.client.request("PUT", path, json_body=body))]

    def add_note(self, request: WriteRequest) -> WriteResult:
        body = {"body": note_html(request.note or ""), "private": True}
        return attempt_note(self.client, request, "POST", f"{API}/tickets/{request.record_id}/notes", body, self.sleep)


def _field_def(object: str, item: Mapping[str, Any]) -> FieldDef:
    vendor = str(item.get("type"))
    options = tuple(_choices(item.get("choices")))
    custom = not item.get("default", False)
    kind = VENDOR_TYPES.get(vendor, "other")
    return FieldDef(object, str(item["name"]), kind, vendor, str(item.get("label") or ""), options,
                    writable=custom and kind != "other")


def _choices(raw: Any) -> list[str]:
    """Dropdown choices: a list of strings (tickets) or of {value} / {label} objects."""
    if isinstance(raw, dict):
        return [str(k) for k in raw]
    out = []
    for item in raw or ():
        if isinstance(item, dict):
            value = item.get("value", item.get("label"))
            if value is not None:
                out.append(str(value))
        elif item is not None:
            out.append(str(item))
    return out
