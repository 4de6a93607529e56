"""The write side of the fake Zendesk: field definitions, field values, bulk jobs and private notes.

Routes (under `/api/v2`, each also with `.json`): `GET`/`POST` `ticket_fields`,
`user_fields`, `organization_fields`; `PUT tickets/update_many` (a job of up to 100
tickets, each with its own values) and `GET job_statuses/{id}`; `PUT tickets/{id}`
(`custom_fields`, `comment`); `PUT users/{id}` (`user_fields`); `PUT organizations/{id}`
(`organization_fields`).

Behaviour kept from Zendesk (reference §1.5): closed tickets refuse updates (422
`RecordInvalid`, "Status: closed prevents ticket update"; in a job, that ticket fails
alone); every update stamps the record with `world.tick()`, so it re-enters the
incremental exports; numbers in ticket fields come back as strings; a comment without
`public: false` is public. A job answers `queued` and is done after `job_polls` polls.
Values are checked against the field's type (a wrong type is refused as Zendesk's
validation does) and unknown field ids or keys are refused. Other ticket properties in
an update (status, assignee, tags...) are not applied: the request log shows them.
Tests pick tickets whose updates fail with `reject_ticket_updates`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.sandbox.server import FakeRequest, FakeResponse, HttpError
from connectors.sandbox.world import CustomField, Organization, Person, Ticket, World

J = r"(?:\.json)?"
BULK_MAX = 100
CLOSED = "Status: closed prevents ticket update"
# Fields every sandbox account has (the read side renders their values itself).
SKU_FIELD_ID, PLAN_FIELD_ID = 360001, 360002
SKUS = ("SKU-100", "SKU-200", "SKU-300", "SKU-400")
SYSTEM_TICKET_FIELDS = (("subject", "Subject"), ("description", "Description"), ("status", "Status"),
                        ("priority", "Priority"), ("group", "Group"), ("assignee", "Assignee"))
# Neutral world types <-> Zendesk's.
TO_VENDOR = {"text": "text", "integer": "integer", "decimal": "decimal", "checkbox": "checkbox", "date": "date",
             "dropdown": "tagger"}
FROM_VENDOR = {"text": "text", "textarea": "text", "regexp": "text", "integer": "integer", "decimal": "decimal",
               "checkbox": "checkbox", "date": "date", "tagger": "dropdown", "dropdown": "dropdown"}
WORLD_OBJECT = {"ticket": "ticket", "user": "person", "organization": "organization"}


class _Invalid(Exception):
    """A value Zendesk's validation refuses."""


@dataclass
class _Job:
    id: str
    total: int
    results: list[dict[str, Any]]
    polls_left: int
    created_at: float = field(default_factory=time.time)


def builtin_fields() -> list[CustomField]:
    """The custom fields the sandbox account starts with (their values come from the world)."""
    return [
        CustomField(SKU_FIELD_ID, "ticket", str(SKU_FIELD_ID), "SKU", "dropdown", SKUS),
        CustomField(PLAN_FIELD_ID, "ticket", str(PLAN_FIELD_ID), "Plan", "text"),
        CustomField(360003, "person", "country", "Country", "text"),
        CustomField(360004, "organization", "country", "Country", "text"),
    ]


class ZendeskWrites:
    """Mixed into `FakeZendesk`; `register_write_routes` is called from its `register_routes`."""

    world: World
    base_url: str

    def register_write_routes(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._rejected: dict[int, str] = {}
        self.job_polls = 1  # polls a job answers `working` before it is `completed`
        route = self.route  # type: ignore[attr-defined]
        for kind in ("ticket_fields", "user_fields", "organization_fields"):
            route("GET", f"/api/v2/{kind}{J}", lambda r, m, k=kind: self._list_fields(k))
            route("POST", f"/api/v2/{kind}{J}", lambda r, m, k=kind: self._create_field(k, r))
        route("PUT", f"/api/v2/tickets/update_many{J}", self._update_many)
        route("GET", rf"/api/v2/job_statuses/(?P<id>[0-9a-f]+){J}", self._job_status)
        route("PUT", rf"/api/v2/tickets/(?P<id>\d+){J}", self._update_ticket)
        route("PUT", rf"/api/v2/users/(?P<id>\d+){J}", self._update_user)
        route("PUT", rf"/api/v2/organizations/(?P<id>\d+){J}", self._update_organization)

    # --- the test API ----------------------------------------------------------------------

    def reject_ticket_updates(self, ticket_ids: Iterable[int] | Mapping[int, str],
                              reason: str = "Ticket is locked by another update") -> None:
        """Updates of these tickets fail (in a job: alone) until `clear_rejections`."""
        items = ticket_ids.items() if isinstance(ticket_ids, Mapping) else ((i, reason) for i in ticket_ids)
        self._rejected.update({int(i): why for i, why in items})

    def clear_rejections(self) -> None:
        self._rejected.clear()

    # --- what the read side renders --------------------------------------------------------

    def field_definitions(self, object: str) -> list[CustomField]:
        """Builtin and admin-defined fields of `object` (world words: ticket, person, organization)."""
        return [f for f in builtin_fields() if f.object == object] + self.world.fields_of("zendesk", object)

    def ticket_custom_fields(self, t: Ticket) -> list[dict[str, Any]]:
        values: dict[int, Any] = {SKU_FIELD_ID: t.sku, PLAN_FIELD_ID: None}
        types = {f.id: f.type for f in self.field_definitions("ticket")}
        for f in self.world.fields_of("zendesk", "ticket"):
            values[f.id] = None
        for key, value in t.custom.items():
            values[int(key)] = value
        return [{"id": i, "value": _as_ticket_value(types.get(i, "text"), v)} for i, v in values.items()]

    def user_field_values(self, p: Person) -> dict[str, Any]:
        return self._keyed_values("person", {"country": p.country}, p.custom)

    def organization_field_values(self, o: Organization) -> dict[str, Any]:
        return self._keyed_values("organization", {"country": o.country}, o.custom)

    def _keyed_values(self, object: str, base: dict[str, Any], custom: Mapping[str, Any]) -> dict[str, Any]:
        values = {**base, **{f.key: None for f in self.world.fields_of("zendesk", object)}}
        values.update(custom)
        return values

    # --- field definitions ---------------------------------------------------------------------

    def _list_fields(self, kind: str) -> FakeResponse:
        object = WORLD_OBJECT[kind.removesuffix("_fields")]
        items = [self._render_field(kind, f, position) for position, f in enumerate(self.field_definitions(object))]
        if kind == "ticket_fields":
            system: list[dict[str, Any]] = [
                {"id": 100 + n, "url": f"{self.base_url}/api/v2/ticket_fields/{100 + n}.json", "type": name,
                 "title": title, "raw_title": title, "active": True, "removable": False, "key": None, "position": n,
                 "required": name == "subject", "custom_field_options": []}
                for n, (name, title) in enumerate(SYSTEM_TICKET_FIELDS)]
            items = system + items
        return FakeResponse(200, {kind: items, "next_page": None, "previous_page": None, "count": len(items)})

    def _render_field(self, kind: str, f: CustomField, position: int) -> dict[str, Any]:
        vendor = TO_VENDOR[f.type] if kind == "ticket_fields" or f.type != "dropdown" else "dropdown"
        stamp = _iso(self.world.start)
        body: dict[str, Any] = {
            "url": f"{self.base_url}/api/v2/{kind}/{f.id}.json", "id": f.id, "type": vendor, "title": f.title,
            "raw_title": f.title, "description": "", "raw_description": "", "position": position, "active": True,
            "regexp_for_validation": None, "created_at": stamp, "updated_at": stamp,
            "custom_field_options": [{"id": f.id * 10 + n, "name": o, "raw_name": o, "value": o}
                                     for n, o in enumerate(f.options)] if f.type == "dropdown" else [],
        }
        if kind == "ticket_fields":
            body.update(removable=True, required=False, visible_in_portal=False, editable_in_portal=False,
                        tag=None, key=None)
        else:
            body.update(key=f.key, system=False)
        return body

    def _create_field(self, kind: str, request: FakeRequest) -> FakeResponse:
        singular = kind.removesuffix("s")
        spec = request.body.get(singular) if isinstance(request.body, dict) else None
        if not isinstance(spec, dict):
            raise HttpError(400, f"expected {{\"{singular}\": {{...}}}}", "InvalidValue")
        vendor, title = spec.get("type", "text"), spec.get("title")
        allowed = set(FROM_VENDOR) - ({"dropdown"} if kind == "ticket_fields" else {"tagger"})
        if vendor not in allowed:
            return _record_invalid("type", f"{vendor!r} is not a valid field type")
        if not isinstance(title, str) or not title.strip():
            return _record_invalid("title", "Title: cannot be blank")
        object = WORLD_OBJECT[kind.removesuffix("_fields")]
        options = tuple(str(o.get("value")) for o in spec.get("custom_field_options") or () if isinstance(o, dict))
        if kind == "ticket_fields":
            created = self.world.define_field("zendesk", "ticket", "", FROM_VENDOR[vendor], title, options)
        else:
            key = spec.get("key")
            if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_]+", key) or key.isdigit():
                return _record_invalid("key", "Key: letters, numbers and underscores only, not only numbers")
            if any(f.key == key for f in self.field_definitions(object)):
                return _record_invalid("key", f"Key: {key} has already been taken")
            created = self.world.define_field("zendesk", object, key, FROM_VENDOR[vendor], title, options)
        position = len(self.field_definitions(object))
        return FakeResponse(201, {singular: self._render_field(kind, created, position)})

    # --- tickets -------------------------------------------------------------------------------

    def _update_many(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        tickets = request.body.get("tickets") if isinstance(request.body, dict) else None
        if not isinstance(tickets, list) or not tickets:
            raise HttpError(400, "Expected a list of tickets", "InvalidValue")
        if len(tickets) > BULK_MAX:
            raise HttpError(400, f"Too many tickets: at most {BULK_MAX} per job", "TooManyValues")
        results = [self._job_item(index, item) for index, item in enumerate(tickets)]
        job = _Job(uuid.uuid4().hex, len(tickets), results, self.job_polls)
        self._jobs[job.id] = job
        return FakeResponse(200, {"job_status": self._render_job(job, "queued")})

    def _job_item(self, index: int, item: Any) -> dict[str, Any]:
        ticket_id = item.get("id") if isinstance(item, dict) else None
        failed = {"index": index, "id": ticket_id, "action": "update", "success": False, "status": "Failed"}
        ticket = self.world.sources["zendesk"].tickets.get(ticket_id) if isinstance(ticket_id, int) else None
        if ticket is None or ticket.deleted:
            return {**failed, "error": "TicketNotFound", "details": f"Ticket {ticket_id} not found"}
        refusal = self._refusal(ticket)
        if refusal:
            return {**failed, "error": "TicketUpdateFailed", "details": refusal}
        try:
            self._apply_ticket(ticket, item)
        except _Invalid as exc:
            return {**failed, "error": "TicketUpdateFailed", "details": str(exc)}
        return {"index": index, "id": ticket_id, "action": "update", "success": True, "status": "Updated"}

    def _job_status(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        job = self._jobs.get(match.group("id"))
        if job is None:
            raise HttpError(404, "Not found", "RecordNotFound")
        if job.polls_left > 0:
            job.polls_left -= 1
            return FakeResponse(200, {"job_status": self._render_job(job, "working")})
        return FakeResponse(200, {"job_status": self._render_job(job, "completed")})

    def _render_job(self, job: _Job, status: str) -> dict[str, Any]:
        done = status == "completed"
        return {"id": job.id, "url": f"{self.base_url}/api/v2/job_statuses/{job.id}.json", "status": status,
                "job_type": "Bulk Update", "total": job.total, "progress": job.total if done else 0,
                "message": f"Completed at {_iso(int(time.time()))}" if done else None,
                "results": job.results if done else None}

    def _update_ticket(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        ticket = self.world.sources["zendesk"].tickets.get(int(match.group("id")))
        if ticket is None or ticket.deleted:
            raise HttpError(404, "Not found", "RecordNotFound")
        change = request.body.get("ticket") if isinstance(request.body, dict) else None
        if not isinstance(change, dict):
            raise HttpError(400, "Expected {\"ticket\": {...}}", "InvalidValue")
        refusal = self._refusal(ticket)
        if refusal:
            return _record_invalid("status" if refusal == CLOSED else "base", refusal)
        try:
            self._apply_ticket(ticket, change)
        except _Invalid as exc:
            return _record_invalid("base", str(exc))
        return FakeResponse(200, {"ticket": self.render_ticket(ticket, False),  # type: ignore[attr-defined]
                                  "audit": {"id": self.world.next_id(), "ticket_id": ticket.id, "events": []}})

    def _refusal(self, ticket: Ticket) -> str | None:
        if ticket.status == "closed":
            return CLOSED
        return self._rejected.get(ticket.id)

    def _apply_ticket(self, ticket: Ticket, change: Mapping[str, Any]) -> None:
        """Custom fields and a comment; checked in full before anything changes."""
        types = {f.id: f for f in self.field_definitions("ticket")}
        values: dict[str, Any] = {}
        for item in change.get("custom_fields") or ():
            if not isinstance(item, dict) or item.get("id") not in types:
                raise _Invalid(f"Invalid ticket field id {item.get('id') if isinstance(item, dict) else item!r}")
            _check_value(types[item["id"]], item.get("value"))
            values[str(item["id"])] = item.get("value")
        comment = change.get("comment")
        text = (comment.get("body") or comment.get("html_body")) if isinstance(comment, dict) else None
        if comment is not None and not text:
            raise _Invalid("Comment: body cannot be blank")
        ticket.custom.update(values)
        if comment is not None:
            author = min(p.id for p in self.world.sources["zendesk"].agents())  # the API user
            self.world.add_note("zendesk", ticket.id, author, str(text),
                                public=comment.get("public", True) is not False)
        elif values:
            ticket.updated_at = self.world.tick()

    # --- users and organizations -------------------------------------------------------------

    def _update_user(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        person = self.world.sources["zendesk"].people.get(int(match.group("id")))
        return self._update_keyed(request, person, "person", "user", "user_fields",
                                  lambda: self.render_user(person))  # type: ignore[attr-defined]

    def _update_organization(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        org = self.world.sources["zendesk"].organizations.get(int(match.group("id")))
        return self._update_keyed(request, org, "organization", "organization", "organization_fields",
                                  lambda: self.render_organization(org))  # type: ignore[attr-defined]

    def _update_keyed(self, request: FakeRequest, record: Person | Organization | None, object: str, wrapper: str,
                      key: str, render: Callable[[], Any]) -> FakeResponse:
        """PUT of a user or organization: its `<wrapper>.<key>` values applied, the record rendered back."""
        if record is None:
            raise HttpError(404, "Not found", "RecordNotFound")
        change = request.body.get(wrapper) if isinstance(request.body, dict) else None
        error = self._apply_keyed(record, object, change, key)
        if error is not None:
            return error
        return FakeResponse(200, {wrapper: render()})

    def _apply_keyed(self, record: Person | Organization, object: str, change: Any, key: str) -> FakeResponse | None:
        if not isinstance(change, dict):
            raise HttpError(400, "Expected an object", "InvalidValue")
        fields = change.get(key) or {}
        defined = {f.key: f for f in self.field_definitions(object)}
        try:
            for name, value in fields.items():
                if name not in defined:
                    raise _Invalid(f"{name} is not a {key[:-1].replace('_', ' ')}")
                _check_value(defined[name], value)
        except _Invalid as exc:
            return _record_invalid(key, str(exc))
        if fields:
            record.custom.update(fields)
            record.updated_at = self.world.tick()
        return None


def _check_value(f: CustomField, value: Any) -> None:
    """Zendesk's type validation of a field value (None clears a field)."""
    if value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        "text": isinstance(value, str),
        "integer": (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, str) and re.fullmatch(r"-?\d+", value) is not None),
        "decimal": number or (isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value) is not None),
        "checkbox": isinstance(value, bool),
        "date": isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is not None,
        "dropdown": value in f.options,
    }[f.type]
    if not ok:
        raise _Invalid(f"{f.title}: {value!r} is not a valid value for a {TO_VENDOR[f.type]} field")


def _as_ticket_value(kind: str, value: Any) -> Any:
    """Zendesk hands back numbers in ticket fields as strings."""
    if kind in ("integer", "decimal") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if kind == "checkbox" and value is None:
        return False
    return value


def _record_invalid(field_name: str, description: str) -> FakeResponse:
    return FakeResponse(422, {"error": "RecordInvalid", "description": "Record validation errors",
                              "details": {field_name: [{"description": description, "error": "InvalidValue"}]}})


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
