"""The write side of the fake Intercom: data attributes, custom attribute values and notes.

Routes: `GET /data_attributes?model=`, `POST /data_attributes` (contact and company only,
as Intercom's API), `PUT /conversations/{id}`, `PUT /contacts/{id}`, `POST /companies`
(update by `company_id`), `POST /conversations/{id}/reply` and `GET /me` (the admin that
owns the token: the workspace's first agent).

Behaviour kept from Intercom (reference §2.5): an attribute must exist before a value is
set (400 otherwise) and its value must fit its data type; every update stamps the record
with `world.tick()`, so it re-enters the `updated_at` search; a reply of `message_type`
`note` is an internal part, a `comment` is a public reply to the customer. Deviation: an
unknown `company_id` is refused (404) instead of creating a company.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connectors.sandbox.server import FakeRequest, FakeResponse, HttpError
from connectors.sandbox.world import CustomField, Organization, Person, Ticket, World

# model -> world object
WORLD_OBJECT = {"conversation": "ticket", "contact": "person", "company": "organization"}
TO_VENDOR = {"text": "string", "integer": "integer", "decimal": "float", "checkbox": "boolean", "date": "date",
             "dropdown": "string"}
FROM_VENDOR = {"string": "text", "integer": "integer", "float": "decimal", "boolean": "checkbox", "date": "date",
               "datetime": "date", "options": "dropdown"}
CREATABLE_MODELS = ("contact", "company")
# Intercom's own (not custom) attributes, listed beside the custom ones.
STANDARD = {"conversation": ("open", "state", "priority"), "contact": ("name", "email", "phone"),
            "company": ("name", "website", "size")}


def builtin_fields() -> list[CustomField]:
    """Custom attributes the sandbox workspace starts with (values rendered by the read side)."""
    return [
        CustomField(370001, "ticket", "ticket_type", "Ticket type", "text"),
        CustomField(370002, "ticket", "sku", "SKU", "text"),
        CustomField(370003, "organization", "country", "Country", "text"),
    ]


class IntercomWrites:
    """Mixed into `FakeIntercom`; `register_write_routes` is called from its `register_routes`."""

    world: World

    def register_write_routes(self) -> None:
        route = self.route  # type: ignore[attr-defined]
        route("GET", "/data_attributes", self._list_attributes)
        route("POST", "/data_attributes", self._create_attribute)
        route("PUT", r"/conversations/(?P<id>\d+)", self._update_conversation)
        route("POST", r"/conversations/(?P<id>\d+)/reply", self._reply)
        route("PUT", r"/contacts/(?P<id>[0-9a-f]{24})", self._update_contact)
        route("POST", "/companies", self._update_company)
        route("GET", "/me", self._me)

    def attributes(self, object: str) -> list[CustomField]:
        return [f for f in builtin_fields() if f.object == object] + self.world.fields_of("intercom", object)

    # --- data attributes ---------------------------------------------------------------------

    def _list_attributes(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        model = request.arg("model")
        if model not in WORLD_OBJECT:
            raise HttpError(400, "model must be one of conversation, contact, company", "parameter_invalid")
        standard = [{"type": "data_attribute", "model": model, "name": name, "full_name": name, "label": name.title(),
                     "description": "", "data_type": "string", "api_writable": False, "ui_writable": True,
                     "custom": False, "archived": False} for name in STANDARD[model]]
        custom = [self._render(model, f) for f in self.attributes(WORLD_OBJECT[model])]
        return FakeResponse(200, {"type": "list", "data": standard + custom})

    def _render(self, model: str, f: CustomField) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "data_attribute", "id": f.id, "model": model, "name": f.key,
            "full_name": f"custom_attributes.{f.key}", "label": f.title, "description": f.title,
            "data_type": TO_VENDOR[f.type], "api_writable": True, "ui_writable": True, "messenger_writable": False,
            "custom": True, "archived": False, "admin_id": self._owner_id(),
            "created_at": self.world.start, "updated_at": self.world.start,
        }
        if f.type == "dropdown":
            body["options"] = list(f.options)  # an array of strings (2.14 schema `data_attribute`)
        return body

    def _create_attribute(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        body = request.body if isinstance(request.body, dict) else {}
        model, name, data_type = body.get("model"), body.get("name"), body.get("data_type")
        if model not in CREATABLE_MODELS:
            raise HttpError(400, "model must be one of: contact, company", "parameter_invalid")
        if not isinstance(name, str) or not name.strip():
            raise HttpError(400, "name is required", "parameter_not_found")
        if data_type not in FROM_VENDOR:
            raise HttpError(400, f"data_type must be one of {', '.join(FROM_VENDOR)}", "parameter_invalid")
        object = WORLD_OBJECT[model]
        if any(f.key == name for f in self.attributes(object)):
            raise HttpError(400, f"You already have a '{name}' attribute", "parameter_invalid")
        options = tuple(str(o.get("value")) for o in body.get("options") or () if isinstance(o, dict))
        created = self.world.define_field("intercom", object, name, FROM_VENDOR[data_type],
                                          str(body.get("description") or name), options)
        return FakeResponse(200, self._render(model, created))

    # --- values ------------------------------------------------------------------------------

    def _update_conversation(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        ticket = self._ticket(match)
        self._apply(ticket, "ticket", _body(request).get("custom_attributes"))
        return FakeResponse(200, self.render_conversation(ticket))  # type: ignore[attr-defined]

    def _update_contact(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        person = self.world.sources["intercom"].people.get(int(match.group("id"), 16))
        if person is None or person.role != "customer":
            raise HttpError(404, "User Not Found", "not_found")
        self._apply(person, "person", _body(request).get("custom_attributes"))
        return FakeResponse(200, self.render_contact(person))  # type: ignore[attr-defined]

    def _update_company(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        body = _body(request)
        wanted = body.get("company_id")
        org = next((o for o in self.world.sources["intercom"].organizations.values() if f"org-{o.id}" == wanted), None)
        if org is None:
            raise HttpError(404, "Company Not Found", "company_not_found")
        self._apply(org, "organization", body.get("custom_attributes"))
        return FakeResponse(200, self.render_company(org))  # type: ignore[attr-defined]

    def _apply(self, record: Ticket | Person | Organization, object: str, values: Any) -> None:
        if values is None:
            return
        if not isinstance(values, dict):
            raise HttpError(400, "custom_attributes must be an object", "parameter_invalid")
        defined = {f.key: f for f in self.attributes(object)}
        for name, value in values.items():
            if name not in defined:
                raise HttpError(400, f"Custom attribute '{name}' does not exist", "parameter_invalid")
            if not _fits(defined[name], value):
                raise HttpError(400, f"Custom attribute '{name}' must be of type {TO_VENDOR[defined[name].type]}",
                                "parameter_invalid")
        record.custom.update(values)
        record.updated_at = self.world.tick()

    # --- notes -------------------------------------------------------------------------------

    def _reply(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        ticket = self._ticket(match)
        body = _body(request)
        kind = body.get("message_type")
        if kind not in ("comment", "note", "quick_reply"):
            raise HttpError(400, "message_type must be comment, note or quick_reply", "parameter_invalid")
        if body.get("type") != "admin":
            raise HttpError(400, "only admin replies are supported by the sandbox", "parameter_invalid")
        agents = {str(p.id) for p in self.world.sources["intercom"].agents()}
        if str(body.get("admin_id")) not in agents:
            raise HttpError(404, "Admin Not Found", "admin_not_found")
        text = body.get("body")
        if not isinstance(text, str) or not text:
            raise HttpError(400, "body is required", "parameter_not_found")
        self.world.add_note("intercom", ticket.id, int(body["admin_id"]), _plain(text), public=kind != "note")
        return FakeResponse(200, self.render_conversation(ticket))  # type: ignore[attr-defined]

    def _owner_id(self) -> str:
        """The admin that owns the token (`GET /me`): who created the attributes made through the API."""
        return str(min(p.id for p in self.world.sources["intercom"].agents()))

    def _me(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        admin = min(self.world.sources["intercom"].agents(), key=lambda p: p.id)
        return FakeResponse(200, {"type": "admin", "id": str(admin.id), "email": admin.email, "name": admin.name,
                                  "email_verified": True, "app": {"type": "app", "id_code": "sandbox",
                                                                  "name": "Sandbox", "created_at": self.world.start,
                                                                  "timezone": "UTC", "region": "US"}})

    def _ticket(self, match: re.Match[str]) -> Ticket:
        ticket = self.world.sources["intercom"].tickets.get(int(match.group("id")))
        if ticket is None or ticket.deleted:
            raise HttpError(404, "Resource Not Found", "not_found")
        return ticket


def _fits(f: CustomField, value: Any) -> bool:
    if value is None:
        return True
    if f.type in ("text", "date"):
        return isinstance(value, str)
    if f.type == "dropdown":
        return value in f.options
    if f.type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if f.type == "decimal":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, bool)


def _body(request: FakeRequest) -> Mapping[str, Any]:
    if not isinstance(request.body, dict):
        raise HttpError(400, "the request body must be a JSON object", "bad_request")
    return request.body


def _plain(html_text: str) -> str:
    return re.sub(r"<[^>]+>", "", html_text)
