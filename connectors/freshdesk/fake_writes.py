"""The write side of the fake Freshdesk: field definitions, custom field values and private notes.

Routes (under `/api/v2`): `GET ticket_fields`, `contact_fields`, `company_fields`;
`POST admin/ticket_fields` (and `admin/contact_fields`, `admin/company_fields`);
`PUT tickets/{id}`, `contacts/{id}`, `companies/{id}` (`custom_fields`); `POST
tickets/{id}/notes`.

Behaviour kept from Freshdesk (reference §3.5, §3.6): a created field is named `cf_` + its
label in lower case with underscores; values are checked against the field type with the
"Validation failed" body (`datatype_mismatch`, `invalid_field` naming
`custom_fields.<name>`); deleted and spam tickets cannot be updated (404); every update
stamps the record with `world.tick()`, so it re-enters `updated_since` reads; a note is
private unless `private: false`. Other ticket properties in an update are not applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from connectors.sandbox.server import FakeRequest, FakeResponse, HttpError
from connectors.sandbox.world import CustomField, Organization, Person, Ticket, World

API = "/api/v2"
WORLD_OBJECT = {"ticket": "ticket", "contact": "person", "company": "organization"}
TO_VENDOR = {"text": "custom_text", "integer": "custom_number", "decimal": "custom_decimal",
             "checkbox": "custom_checkbox", "date": "custom_date", "dropdown": "custom_dropdown"}
FROM_VENDOR = {v: k for k, v in TO_VENDOR.items()} | {"custom_paragraph": "text"}
DEFAULT_FIELDS = {
    "ticket": ("requester", "subject", "ticket_type", "source", "status", "priority", "group", "agent", "description"),
    "contact": ("name", "email", "phone", "company_name"),
    "company": ("name", "description", "note", "domains"),
}
Route = Callable[[FakeRequest, "re.Match[str]"], FakeResponse]


class _Invalid(Exception):
    def __init__(self, field: str, message: str, code: str) -> None:
        super().__init__(message)
        self.field, self.message, self.code = field, message, code


def builtin_fields() -> list[CustomField]:
    """Custom fields the sandbox account starts with (values rendered by the read side)."""
    return [
        CustomField(380001, "ticket", "cf_sku", "sku", "dropdown", ("SKU-100", "SKU-200", "SKU-300", "SKU-400")),
        CustomField(380002, "ticket", "cf_plan", "plan", "dropdown", ("pro", "basic")),
        CustomField(380003, "ticket", "cf_kpi_frt_minutes", "kpi_frt_minutes", "integer"),
        CustomField(380004, "organization", "cf_country", "country", "text"),
        CustomField(380005, "organization", "cf_segment", "segment", "text"),
    ]


class FreshdeskWrites:
    """Mixed into `FakeFreshdesk`; `register_write_routes` is called from its `register_routes`."""

    world: World

    def register_write_routes(self) -> None:
        route, checked = self.route, self._validated  # type: ignore[attr-defined]
        for object in WORLD_OBJECT:
            route("GET", f"{API}/{object}_fields", checked(lambda r, m, o=object: self._list_fields(o)))
            route("POST", f"{API}/admin/{object}_fields", checked(lambda r, m, o=object: self._create_field(o, r)))
        route("PUT", rf"{API}/tickets/(\d+)", checked(self._write_guard(self._update_ticket)))
        route("PUT", rf"{API}/contacts/(\d+)", checked(self._write_guard(self._update_contact)))
        route("PUT", rf"{API}/companies/(\d+)", checked(self._write_guard(self._update_company)))
        route("POST", rf"{API}/tickets/(\d+)/notes", checked(self._write_guard(self._add_note)))

    def fields(self, object: str) -> list[CustomField]:
        return [f for f in builtin_fields() if f.object == object] + self.world.fields_of("freshdesk", object)

    # --- what the read side renders --------------------------------------------------------

    def ticket_field_values(self, t: Ticket) -> dict[str, Any]:
        base = {"cf_sku": t.sku, "cf_plan": ("pro", "basic")[t.requester_id % 2], "cf_kpi_frt_minutes": None}
        return self._values("ticket", base, t.custom)

    def contact_field_values(self, p: Person) -> dict[str, Any]:
        return self._values("person", {}, p.custom)

    def company_field_values(self, o: Organization) -> dict[str, Any]:
        return self._values("organization", {"cf_country": o.country, "cf_segment": o.tags[0] if o.tags else None},
                            o.custom)

    def _values(self, object: str, base: dict[str, Any], custom: Mapping[str, Any]) -> dict[str, Any]:
        values = {**base, **{f.key: None for f in self.world.fields_of("freshdesk", object)}}
        values.update(custom)
        return values

    # --- field definitions -------------------------------------------------------------------

    def _list_fields(self, object: str) -> FakeResponse:
        default = [{"id": 390000 + n, "name": name, "label": name.replace("_", " ").title(), "position": n + 1,
                    "type": f"default_{name}", "default": True, "required_for_agents": name == "subject",
                    "customers_can_edit": True, "label_for_customers": name.title(),
                    "created_at": self._stamp(), "updated_at": self._stamp()}
                   for n, name in enumerate(DEFAULT_FIELDS[object])]
        custom = [self._render(f, len(default) + n + 1) for n, f in enumerate(self.fields(WORLD_OBJECT[object]))]
        return FakeResponse(200, default + custom)

    def _render(self, f: CustomField, position: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": f.id, "name": f.key, "label": f.title, "description": None, "position": position,
            "type": TO_VENDOR[f.type], "default": False, "required_for_closure": False, "required_for_agents": False,
            "required_for_customers": False, "customers_can_edit": False, "label_for_customers": f.title,
            "displayed_to_customers": False, "created_at": self._stamp(), "updated_at": self._stamp(),
        }
        if f.type == "dropdown":
            body["choices"] = list(f.options)
        return body

    def _create_field(self, object: str, request: FakeRequest) -> FakeResponse:
        body = request.body if isinstance(request.body, dict) else {}
        label, vendor = body.get("label"), body.get("type")
        if not isinstance(label, str) or not label.strip():
            return _validation("label", "It should be a/an String", "missing_field")
        if vendor not in FROM_VENDOR:
            return _validation("type", f"It should be one of these values: '{','.join(sorted(FROM_VENDOR))}'",
                               "invalid_value")
        name = "cf_" + "_".join(filter(None, re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).split("_")))
        world_object = WORLD_OBJECT[object]
        if any(f.key == name for f in self.fields(world_object)):
            return FakeResponse(409, {"description": "Validation failed", "errors": [
                {"field": "label", "message": "It should be a unique value", "code": "duplicate_value"}]})
        choices = tuple(str(c.get("value", c) if isinstance(c, dict) else c) for c in body.get("choices") or ())
        created = self.world.define_field("freshdesk", world_object, name, FROM_VENDOR[vendor], label, choices)
        return FakeResponse(201, self._render(created, len(self.fields(world_object))))

    # --- values and notes ------------------------------------------------------------------------

    def _write_guard(self, handler: Route) -> Route:
        def run(request: FakeRequest, match: re.Match[str]) -> FakeResponse:
            try:
                return handler(request, match)
            except _Invalid as exc:
                return _validation(exc.field, exc.message, exc.code)
        return run

    def _update_ticket(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        ticket = self._live_ticket(match)
        self._apply(ticket, "ticket", _body(request).get("custom_fields"))
        return FakeResponse(200, self.render_ticket(ticket))  # type: ignore[attr-defined]

    def _update_contact(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        person = self.world.sources["freshdesk"].people.get(int(match.group(1)))
        if person is None or person.role != "customer":
            raise HttpError(404, "The requested resource could not be found", "not_found")
        self._apply(person, "person", _body(request).get("custom_fields"))
        return FakeResponse(200, self.render_contact(person))  # type: ignore[attr-defined]

    def _update_company(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        org = self.world.sources["freshdesk"].organizations.get(int(match.group(1)))
        if org is None:
            raise HttpError(404, "The requested resource could not be found", "not_found")
        self._apply(org, "organization", _body(request).get("custom_fields"))
        return FakeResponse(200, self.render_company(org))  # type: ignore[attr-defined]

    def _apply(self, record: Ticket | Person | Organization, object: str, values: Any) -> None:
        if values is None:
            return
        if not isinstance(values, dict):
            raise _Invalid("custom_fields", "It should be a/an key/value pair", "datatype_mismatch")
        defined = {f.key: f for f in self.fields(object)}
        for name, value in values.items():
            where = f"custom_fields.{name}"
            if name not in defined:
                raise _Invalid(where, "Unexpected/invalid field in request", "invalid_field")
            _check(defined[name], value, where)
        record.custom.update(values)
        record.updated_at = self.world.tick()

    def _add_note(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        ticket = self._live_ticket(match)
        body = _body(request)
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            raise _Invalid("body", "It should be a/an String", "missing_field")
        author = min(p.id for p in self.world.sources["freshdesk"].agents())  # the API key's agent
        message = self.world.add_note("freshdesk", ticket.id, author, re.sub(r"<[^>]+>", "", text),
                                      public=body.get("private", True) is False)
        return FakeResponse(201, self.render_conversation(ticket, message))  # type: ignore[attr-defined]

    def _live_ticket(self, match: re.Match[str]) -> Ticket:
        ticket = self.world.sources["freshdesk"].tickets.get(int(match.group(1)))
        if ticket is None or ticket.deleted or ticket.spam:
            raise HttpError(404, "The requested resource could not be found", "not_found")
        return ticket

    def _stamp(self) -> str:
        return datetime.fromtimestamp(self.world.start, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check(f: CustomField, value: Any, where: str) -> None:
    if value is None:
        return
    if f.type == "dropdown":
        if value not in f.options:
            raise _Invalid(where, f"It should be one of these values: '{','.join(f.options)}'", "invalid_value")
        return
    expected = {"text": "String", "date": "Date", "integer": "Integer", "decimal": "Number", "checkbox": "Boolean"}
    ok = {
        "text": isinstance(value, str),
        "date": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "decimal": isinstance(value, (int, float)) and not isinstance(value, bool),
        "checkbox": isinstance(value, bool),
    }[f.type]
    if not ok:
        raise _Invalid(where, f"It should be a/an {expected[f.type]}", "datatype_mismatch")


def _body(request: FakeRequest) -> Mapping[str, Any]:
    if not isinstance(request.body, dict):
        raise _Invalid("", "It should be a/an key/value pair", "datatype_mismatch")
    return request.body


def _validation(field: str, message: str, code: str) -> FakeResponse:
    return FakeResponse(400, {"description": "Validation failed",
                              "errors": [{"field": field, "message": message, "code": code}]})
