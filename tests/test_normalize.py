"""The connectors' normalizers on plain payloads shaped as the vendors document them.

No fake, no HTTP: the payloads are the example pages of /work/shared/reference/helpdesk-apis.md
(sections 1.7, 2.7, 3.7 and the vendors' rating objects), so a fake written from the same
reading as a connector cannot hide a shared mistake here.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from connectors.base import Privacy
from connectors.freshdesk import normalize as fd
from connectors.intercom import normalize as intercom
from connectors.zendesk import normalize as zendesk

# --- Zendesk (reference 1.7) ----------------------------------------------------------------------

ZENDESK_TICKET: dict[str, Any] = {
    "id": 5101, "url": "https://acme.zendesk.com/api/v2/tickets/5101.json", "external_id": None,
    "subject": "Cannot export invoices", "description": "Export button greys out after I pick a date range.",
    "type": "question", "priority": "normal", "status": "solved",
    "requester_id": 9001, "submitter_id": 9001, "assignee_id": 700, "organization_id": 42, "group_id": 12,
    "brand_id": 1,
    "tags": ["billing", "export"],
    "custom_fields": [{"id": 360001, "value": None}, {"id": 360002, "value": "plan_pro"}],
    "via": {"channel": "email", "source": {"from": {"address": "jo@example.org", "name": "Jo"},
                                           "to": {"address": "help@acme.com"}, "rel": None}},
    "satisfaction_rating": {"score": "offered"},
    "created_at": "2024-03-01T09:00:05Z", "updated_at": "2024-03-01T10:12:40Z", "generated_timestamp": 1709287960,
}
ZENDESK_DELETED: dict[str, Any] = {
    "id": 5099, "status": "deleted", "subject": "spam", "tags": [], "custom_fields": [],
    "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
    "created_at": "2024-02-28T17:00:00Z", "updated_at": "2024-03-01T09:30:00Z", "generated_timestamp": 1709285400,
}
ZENDESK_REQUESTER: dict[str, Any] = {"id": 9001, "role": "end-user", "locale": "es-MX", "name": "Jo",
                                     "email": "jo@example.org", "user_fields": {"country": "MX"}}


def test_zendesk_ticket_becomes_a_contact_row_without_personal_text() -> None:
    row = zendesk.contact_row(ZENDESK_TICKET, {9001: ZENDESK_REQUESTER}, {}, "2024-01-01T00:00:00Z")
    assert {k: row[k] for k in ("source", "source_id", "channel", "status", "priority", "created_at", "updated_at",
                                "requester_id", "assignee_id", "group_id", "organization_id", "ticket_type")} == {
        "source": "zendesk", "source_id": "5101", "channel": "email", "status": "resolved", "priority": "normal",
        "created_at": "2024-03-01T09:00:05Z", "updated_at": "2024-03-01T10:12:40Z", "requester_id": "9001",
        "assignee_id": "700", "group_id": "12", "organization_id": "42", "ticket_type": "question"}
    assert sorted(row["tags"]) == ["billing", "export"]
    assert row["language"] == "es" and row["country"] == "MX"
    assert row["is_outbound"] is False  # the requester submitted it
    text = json.dumps(row, default=str)
    assert not [s for s in ("Cannot export invoices", "Export button", "jo@example.org", "\"Jo\"") if s in text]


def test_zendesk_deleted_ticket_is_a_deleted_contact() -> None:
    row = zendesk.contact_row(ZENDESK_DELETED, {}, {}, "2024-01-01T00:00:00Z")
    assert (row["source_id"], row["status"], row["channel"]) == ("5099", "deleted", "web_form")


@pytest.mark.parametrize("via, role", [
    ({"channel": "web"}, None),  # a person: the author's own role decides
    ({"channel": "email"}, None),
    ({"channel": "rule"}, "system"),  # a trigger or automation
    ({"channel": "answer_bot"}, "bot"),  # the AI agent
])
def test_zendesk_comment_author_role_comes_from_its_via(via: dict[str, Any], role: str | None) -> None:
    event = {"id": 77001, "ticket_id": 5101, "timestamp": 1709284020, "created_at": "2024-03-01T09:07:00Z",
             "child_events": [{"id": 77002, "event_type": "Comment", "author_id": 700, "public": True, "via": via,
                               "body": "Here is the link.", "plain_body": "Here is the link."}]}
    [(table, message)] = list(zendesk.event_rows(event))
    assert table == "messages"
    assert {k: message[k] for k in ("source_id", "contact_id", "author_id", "author_role", "public", "created_at",
                                    "body")} == {
        "source_id": "77002", "contact_id": "5101", "author_id": "700", "author_role": role, "public": True,
        "created_at": "2024-03-01T09:07:00Z", "body": None}


def test_zendesk_status_change_to_solved_is_a_resolution() -> None:
    event = {"id": 78001, "ticket_id": 5101, "created_at": "2024-03-01T10:12:40Z",
             "child_events": [{"id": 78002, "event_type": "Change", "field_name": "status",
                               "previous_value": "open", "status": "solved"}]}
    assert [(t, r["kind"], r["at"]) for t, r in zendesk.event_rows(event)] == [
        ("status_events", "resolved", "2024-03-01T10:12:40Z")]


def test_zendesk_legacy_rating_becomes_a_good_bad_survey_row() -> None:
    rating = {"id": 35436, "url": "https://acme.zendesk.com/api/v2/satisfaction_ratings/35436.json",
              "assignee_id": 700, "group_id": 12, "requester_id": 9001, "ticket_id": 5101, "score": "good",
              "comment": "Awesome support!", "created_at": "2024-03-01T10:20:00Z", "updated_at": "2024-03-01T11:00:00Z"}
    row = zendesk.legacy_rating_row(rating)
    assert row is not None
    assert (row["source_id"], row["kind"], row["score"], row["scale"], row["is_positive"], row["created_at"],
            row["contact_id"], row["comment"]) == ("35436", "csat", 1.0, "good_bad", True, "2024-03-01T11:00:00Z",
                                                   "5101", None)
    bad = zendesk.legacy_rating_row({**rating, "score": "bad"})
    assert bad is not None and (bad["score"], bad["is_positive"]) == (0.0, False)
    assert zendesk.legacy_rating_row({**rating, "score": "offered"}) is None  # offered, never answered
    assert "Awesome support!" not in json.dumps(row, default=str)


# --- Intercom (reference 2.7) ---------------------------------------------------------------------

INTERCOM_CONVERSATION: dict[str, Any] = {
    "type": "conversation", "id": "70011", "title": None, "created_at": 1709283600, "updated_at": 1709287100,
    "waiting_since": None, "snoozed_until": None, "open": False, "state": "closed", "read": True,
    "priority": "not_priority", "admin_assignee_id": 5512, "team_assignee_id": 301,
    "source": {"type": "conversation", "id": "90011", "delivered_as": "customer_initiated", "subject": "",
               "body": "<p>My card was charged twice</p>",
               "author": {"type": "user", "id": "65e1aa01c0ffee0001", "name": "Ana", "email": "ana@example.org"},
               "attachments": [], "url": "https://app.example.org/billing", "redacted": False},
    "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": "65e1aa01c0ffee0001",
                                                       "external_id": "u-77"}]},
    "teammates": {"type": "admin.list", "admins": [{"type": "admin", "id": "5512"}]},
    "tags": {"type": "tag.list", "tags": [{"type": "tag", "id": "44", "name": "billing"}]},
    "custom_attributes": {"kpi_first_reply_s": 420},
    "statistics": {
        "type": "conversation_statistics", "time_to_assignment": 60, "time_to_admin_reply": 420,
        "time_to_first_close": 3300, "time_to_last_close": 3300, "median_time_to_reply": 420,
        "first_contact_reply_at": 1709283600, "first_assignment_at": 1709283660, "first_admin_reply_at": 1709284020,
        "first_close_at": 1709286900, "last_contact_reply_at": 1709284500, "last_admin_reply_at": 1709286800,
        "last_close_at": 1709286900, "last_closed_by_id": "5512", "count_reopens": 0, "count_assignments": 1,
        "count_conversation_parts": 2, "handling_time": 3240, "adjusted_handling_time": 900},
    "conversation_rating": {"rating": 5, "remark": "quick fix", "created_at": 1709286950, "updated_at": 1709287100,
                            "contact": {"type": "contact", "id": "65e1aa01c0ffee0001"},
                            "teammate": {"type": "admin", "id": "5512"}},
    "ai_agent_participated": False, "ai_agent": None, "sla_applied": None,
}
INTERCOM_PARTS: list[dict[str, Any]] = [
    {"type": "conversation_part", "id": "1001", "part_type": "comment", "body": "<p>Refunded.</p>",
     "created_at": 1709284020, "updated_at": 1709284020, "notified_at": 1709284020, "assigned_to": None,
     "author": {"type": "admin", "id": "5512", "name": "Lee", "email": "lee@acme.com", "from_ai_agent": False,
                "is_ai_answer": False},
     "attachments": [], "external_id": None, "redacted": False, "state": "open", "tags": []},
    {"type": "conversation_part", "id": "1002", "part_type": "close", "body": None, "created_at": 1709286900,
     "updated_at": 1709286900, "author": {"type": "admin", "id": "5512"}, "state": "closed"},
]


def intercom_rows(conversation: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for table, row in intercom.conversation_records(conversation, parts, intercom.UNKNOWN_CONTACT):
        out.setdefault(table, []).append(row)
    return out


def test_intercom_conversation_and_its_parts() -> None:
    rows = intercom_rows(INTERCOM_CONVERSATION, INTERCOM_PARTS)
    [contact] = rows["contacts"]
    assert {k: contact[k] for k in ("source", "source_id", "status", "priority", "created_at", "updated_at",
                                    "requester_id", "assignee_id", "group_id", "is_outbound", "handle_seconds")} == {
        "source": "intercom", "source_id": "70011", "status": "closed", "priority": "normal",
        "created_at": "2024-03-01T09:00:00Z", "updated_at": "2024-03-01T09:58:20Z",
        "requester_id": "65e1aa01c0ffee0001", "assignee_id": "5512", "group_id": "301", "is_outbound": False,
        "handle_seconds": 3240.0}
    source, reply = rows["messages"]
    assert (source["source_id"], source["author_role"], source["public"], source["body"]) == (
        "70011:source", "customer", True, None)
    assert {k: reply[k] for k in ("source_id", "contact_id", "author_id", "author_role", "public", "created_at",
                                  "body")} == {
        "source_id": "1001", "contact_id": "70011", "author_id": "5512", "author_role": "agent", "public": True,
        "created_at": "2024-03-01T09:07:00Z", "body": None}
    assert [(e["kind"], e["at"]) for e in rows["status_events"]] == [("resolved", "2024-03-01T09:55:00Z")]
    text = json.dumps(rows, default=str)
    assert not [s for s in ("charged twice", "Refunded", "ana@example.org", "lee@acme.com", "quick fix") if s in text]


@pytest.mark.parametrize("author, role", [
    ({"type": "admin", "id": "5512", "from_ai_agent": False, "is_ai_answer": False}, "agent"),
    ({"type": "user", "id": "65e1"}, "customer"),
    ({"type": "lead", "id": "65e1"}, "customer"),
    ({"type": "bot", "id": "1", "from_ai_agent": True, "is_ai_answer": True}, "bot"),
    ({"type": "bot", "id": "1"}, "system"),  # Operator and workflows: not a person, not the AI agent
])
def test_intercom_part_author_role(author: dict[str, Any], role: str) -> None:
    assert intercom.author_role(author).value == role


def test_intercom_rating_becomes_a_one_to_five_survey_row() -> None:
    [survey] = intercom_rows(INTERCOM_CONVERSATION, INTERCOM_PARTS)["survey_responses"]
    assert (survey["source_id"], survey["kind"], survey["score"], survey["scale"], survey["is_positive"],
            survey["created_at"], survey["contact_id"], survey["requester_id"], survey["agent_id"],
            survey["comment"]) == (
        "70011", "csat", 5.0, "1-5", True, "2024-03-01T09:58:20Z", "70011", "65e1aa01c0ffee0001", "5512", None)
    unhappy = copy.deepcopy(INTERCOM_CONVERSATION)
    unhappy["conversation_rating"]["rating"] = 2
    [low] = intercom_rows(unhappy, INTERCOM_PARTS)["survey_responses"]
    assert (low["score"], low["is_positive"]) == (2.0, False)
    unrated = {**INTERCOM_CONVERSATION, "conversation_rating": None}
    assert "survey_responses" not in intercom_rows(unrated, INTERCOM_PARTS)


NOTHING_PERSONAL = Privacy.choose(fd.PERSONAL)  # the default switches: keep nothing personal

# --- Freshdesk (reference 3.7) --------------------------------------------------------------------

FRESHDESK_TICKETS: list[dict[str, Any]] = [
    {"id": 3301, "subject": "Password reset link expired", "status": 4, "priority": 2, "source": 1, "type": "Question",
     "requester_id": 43001, "responder_id": 43900, "group_id": 7001, "company_id": None, "product_id": None,
     "email_config_id": 12, "tags": ["login"], "custom_fields": {"cf_plan": "pro", "cf_kpi_frt_minutes": None},
     "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [], "to_emails": None,
     "due_by": "2024-03-02T09:00:00Z", "fr_due_by": "2024-03-01T13:00:00Z", "is_escalated": False,
     "fr_escalated": False, "spam": False, "created_at": "2024-03-01T09:00:00Z", "updated_at": "2024-03-01T11:45:00Z",
     "stats": {"agent_responded_at": "2024-03-01T09:40:00Z", "requester_responded_at": "2024-03-01T10:05:00Z",
               "first_responded_at": "2024-03-01T09:40:00Z", "status_updated_at": "2024-03-01T11:45:00Z",
               "reopened_at": None, "resolved_at": "2024-03-01T11:45:00Z", "closed_at": None, "pending_since": None}},
    {"id": 3302, "subject": "Chat: cannot upload file", "status": 2, "priority": 1, "source": 7, "type": None,
     "requester_id": 43002, "responder_id": None, "group_id": None, "company_id": 501, "tags": [],
     "custom_fields": {"cf_plan": None, "cf_kpi_frt_minutes": None},
     "due_by": "2024-03-04T09:00:00Z", "fr_due_by": "2024-03-01T14:00:00Z", "is_escalated": False,
     "fr_escalated": True, "spam": False, "created_at": "2024-03-01T11:50:00Z", "updated_at": "2024-03-01T11:50:00Z",
     "stats": {"agent_responded_at": None, "requester_responded_at": None, "first_responded_at": None,
               "status_updated_at": "2024-03-01T11:50:00Z", "reopened_at": None, "resolved_at": None,
               "closed_at": None, "pending_since": None}},
]


@pytest.mark.parametrize("ticket, channel, status", [(FRESHDESK_TICKETS[0], "email", "resolved"),
                                                     (FRESHDESK_TICKETS[1], "chat", "open")])
def test_freshdesk_ticket_source_code_maps_to_a_channel(ticket: dict[str, Any], channel: str, status: str) -> None:
    row = fd.ticket_fields(ticket, NOTHING_PERSONAL)
    assert (row["source_id"], row["channel"], row["status"], row["created_at"]) == (
        str(ticket["id"]), channel, status, ticket["created_at"])
    assert ticket["subject"] not in json.dumps(row, default=str)


@pytest.mark.parametrize("code, channel", [(1, "email"), (2, "web_form"), (3, "phone"), (5, "social"), (6, "social"),
                                           (7, "chat"), (9, "web_form"), (10, "email"), (12, "other"), (99, "other")])
def test_freshdesk_source_codes(code: int, channel: str) -> None:
    assert fd.ticket_fields({**FRESHDESK_TICKETS[1], "source": code}, NOTHING_PERSONAL)["channel"] == channel


def test_freshdesk_custom_status_is_on_hold() -> None:
    assert [fd.ticket_status(code).value for code in (2, 3, 4, 5, 6, 7)] == [
        "open", "pending", "resolved", "closed", "on_hold", "on_hold"]


def test_freshdesk_rating_becomes_a_survey_row_on_its_own_scale() -> None:
    rating = {"id": 82001, "survey_id": 3, "user_id": 43001, "agent_id": 43900, "feedback": "Thanks, all sorted",
              "group_id": 7001, "ticket_id": 3301, "ratings": {"default_question": 103},
              "created_at": "2024-03-01T12:00:00Z", "updated_at": "2024-03-01T12:00:00Z"}
    [row] = fd.survey_rows(rating, {}, NOTHING_PERSONAL)
    assert (row["source_id"], row["kind"], row["score"], row["scale"], row["is_positive"], row["created_at"],
            row["contact_id"], row["requester_id"], row["agent_id"], row["comment"]) == (
        "82001", "csat", 103.0, "freshdesk", True, "2024-03-01T12:00:00Z", "3301", "43001", "43900", None)
    [unhappy] = fd.survey_rows({**rating, "ratings": {"default_question": -103}}, {}, NOTHING_PERSONAL)
    assert (unhappy["score"], unhappy["is_positive"]) == (-103.0, False)
    assert "Thanks, all sorted" not in json.dumps(row, default=str)
