"""Intercom write-back: conversation, contact and company custom attributes, and conversation notes (reference §2.5).

- Conversations: `PUT /conversations/{id}` with `custom_attributes`; contacts:
  `PUT /contacts/{id}`; companies: `POST /companies` with their `company_id` (Intercom's
  create-or-update). None of them has a per-record bulk form: one request per record. The
  company POST sets absolute values on an existing company, so it is retried like a PUT.
- Attributes are data attributes (`GET /data_attributes?model=...`). The API creates them
  for contacts and companies (`POST /data_attributes`) but not for conversations: those an
  admin creates in Intercom's settings, and `create_field` says exactly which.
- A note is a conversation reply of `message_type: "note"` by an admin, teammates only;
  the admin is the owner of the access token (`GET /me`). It is never repeated.
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
    WriteRequest,
    WriteResult,
)
from connectors.intercom.client import client
from connectors.intercom.settings import IntercomSettings
from connectors.writing import HttpWriter, attempt, attempt_note, note_html

VENDOR_TYPES: dict[str, str] = {
    "string": "text", "integer": "integer", "float": "number", "boolean": "checkbox", "date": "date",
    "datetime": "date", "options": "dropdown",
}
CREATE_TYPES = {"text": "string", "integer": "integer", "number": "float", "checkbox": "boolean"}
CREATABLE_MODELS = frozenset({"contact", "company"})


class IntercomWriter(HttpWriter):
    """Writes custom attributes and internal notes into an Intercom workspace."""

    name: ClassVar[str] = "intercom"
    objects: ClassVar[tuple[str, ...]] = ("conversation", "contact", "company")

    def __init__(self, settings: IntercomSettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client(settings, sleep=sleep)
        self.sleep = sleep
        self._admin_id: str | None = None

    # --- attribute definitions ---------------------------------------------------------------

    def field_definitions(self, object: str) -> list[FieldDef]:
        data = self.client.get("/data_attributes", {"model": object}).data
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise MalformedResponse("intercom: GET /data_attributes: no data list in the answer")
        return [_field_def(object, item) for item in items if isinstance(item, dict) and not item.get("archived")]

    def create_field(self, spec: FieldSpec) -> FieldDef:
        vendor = CREATE_TYPES[spec.type]
        if spec.object not in CREATABLE_MODELS:
            raise FieldNotCreatable(
                f"intercom: the API cannot create conversation attributes. In Intercom, Settings > Data >"
                f" Conversations > Create attribute: name {spec.key!r}, format {vendor}"
                f" ({_format_label(vendor)}), description {spec.title!r}")
        body = {"name": spec.key, "model": spec.object, "data_type": vendor, "description": spec.title}
        data = self.client.request("POST", "/data_attributes", json_body=body, idempotent=False).data
        if not isinstance(data, dict) or "name" not in data:
            raise MalformedResponse("intercom: POST /data_attributes: no data attribute in the answer")
        return _field_def(spec.object, data)

    # --- writes ------------------------------------------------------------------------------

    def batch_size(self, object: str) -> int:
        return 1

    def write(self, object: str, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        (request,) = requests
        attributes: dict[str, Any] = {"custom_attributes": dict(request.fields)}
        if object == "conversation":
            path, method, body = f"/conversations/{request.record_id}", "PUT", attributes
        elif object == "contact":
            path, method, body = f"/contacts/{request.record_id}", "PUT", attributes
        elif object == "company":
            if not request.external_id:
                return [WriteResult(request, False, f"intercom: company {request.record_id} has no company_id")]
            path, method, body = "/companies", "POST", {"company_id": request.external_id, **attributes}
        else:
            raise ValueError(f"intercom: cannot write {object!r}")
        return [attempt(request, lambda: self.client.request(method, path, json_body=body))]

    def add_note(self, request: WriteRequest) -> WriteResult:
        try:
            admin_id = self.admin_id()
        except (AuthError, PermissionDenied):
            raise
        except (FatalApiError, MalformedResponse) as exc:
            return WriteResult(request, False, str(exc))
        body = {"message_type": "note", "type": "admin", "admin_id": admin_id, "body": note_html(request.note or "")}
        return attempt_note(self.client, request, "POST", f"/conversations/{request.record_id}/reply", body, self.sleep)

    def admin_id(self) -> str:
        """The admin that owns the access token: notes are posted in its name."""
        if self._admin_id is None:
            data = self.client.get("/me").data
            if not isinstance(data, dict) or data.get("id") is None:
                raise MalformedResponse("intercom: GET /me: no admin id in the answer")
            self._admin_id = str(data["id"])
        return self._admin_id


def _field_def(object: str, item: Mapping[str, Any]) -> FieldDef:
    vendor = str(item.get("data_type"))
    options = _options(item.get("options"))
    kind = "dropdown" if options and vendor in ("string", "options") else VENDOR_TYPES.get(vendor, "other")
    writable = bool(item.get("custom")) and item.get("api_writable", True) is not False and kind != "other"
    return FieldDef(object, str(item["name"]), kind, vendor, str(item.get("label") or item.get("description") or ""),
                    options, writable)


def _options(value: Any) -> tuple[str, ...]:
    """A data attribute's `options`: an array of strings (2.14 schema `data_attribute`); objects
    with a `value` (the shape `POST /data_attributes` takes) are read too."""
    if not isinstance(value, list):
        return ()
    options = (o.get("value") if isinstance(o, dict) else o for o in value)
    return tuple(str(o) for o in options if isinstance(o, (str, int, float)) and not isinstance(o, bool))


def _format_label(vendor: str) -> str:
    return {"string": "Text", "integer": "Number", "float": "Decimal number", "boolean": "True/false"}[vendor]
