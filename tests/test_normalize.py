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
from connectors.intercom import writer as intercom_writer
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


# Zendesk's documented new-CSAT response object (api-reference csat_survey_responses, "JSON format"
# example): no top-level time; an answer carries its own created_at/updated_at.
ZENDESK_SURVEY_RESPONSE: dict[str, Any] = {
    "answers": [{"created_at": "2024-08-14T12:00:00.000Z", "question": {
        "alias": "comment", "headline": {"type": "static",
                                         "value": "Anything else you would like to share about your experience?"},
        "id": "01GFYBENPDGN1R6NAA4WRDNVFR", "type": "open_ended"}, "type": "skipped",
        "updated_at": "2024-08-14T12:00:00.000Z"}],
    "expires_at": "2024-08-14T12:00:00.000Z", "id": "01J1WB51MG6HXTYWE6Q0C93RNW", "responder_id": 4398080151295,
    "subject_zrns": ["zen:ticket:99"], "subjects": [{"id": "99", "type": "ticket", "zrn": "zen:ticket:99"}],
    "survey": {"id": "01J58KJ9RAE0D2EK7HRVM7Z8F2", "state": "enabled", "version": 3},
}
# A rating-scale answer as the reference's answer table describes it (rating, rating_category,
# question.sub_type); the options' field names are not in the documented example (unconfirmed).
ZENDESK_CSAT_ANSWER: dict[str, Any] = {
    "type": "rating_scale", "rating": 4, "rating_category": "good",
    "question": {"id": "01J58KJ9RAE0D2EK7HRVM7Z8F3", "type": "rating_scale_numeric",
                 "sub_type": "customer_satisfaction", "alias": "csat",
                 "headline": {"type": "static", "value": "How satisfied were you?"},
                 "options": [{"id": f"01J58KJ9RAE0D2EK7HRVM7Z8G{v}", "rating": v,
                              "label": {"type": "static", "value": str(v)}} for v in range(1, 6)]},
    "created_at": "2024-08-15T09:30:00.000Z", "updated_at": "2024-08-15T09:30:00.000Z",
}


def test_zendesk_documented_new_csat_response_is_no_response_until_rated() -> None:
    """Zendesk's own example (only a skipped answer) is read, not quarantined: nothing rated yet."""
    assert zendesk.survey_response_row(ZENDESK_SURVEY_RESPONSE) is None
    assert zendesk.survey_response_row({**ZENDESK_SURVEY_RESPONSE, "answers": []}) is None  # just offered


@pytest.mark.parametrize("subjects", [
    {"subjects": [{"id": "99", "type": "ticket", "zrn": "zen:ticket:99"}]},
    {"subjects": None, "subject_zrns": ["zen:ticket:99"]},  # the list endpoint's older example: zrns only
])
def test_zendesk_new_csat_rating_is_dated_by_its_answer_on_the_question_scale(subjects: dict[str, Any]) -> None:
    response = {**ZENDESK_SURVEY_RESPONSE, **subjects,
                "answers": [*ZENDESK_SURVEY_RESPONSE["answers"], ZENDESK_CSAT_ANSWER]}
    row = zendesk.survey_response_row(response)
    assert row is not None
    assert (row["source_id"], row["kind"], row["score"], row["scale"], row["is_positive"], row["created_at"],
            row["contact_id"], row["requester_id"]) == (
        "01J1WB51MG6HXTYWE6Q0C93RNW", "csat", 4.0, "1-5", True, "2024-08-15T09:30:00Z", "99", "4398080151295")


def test_zendesk_new_csat_scale_comes_from_the_options_or_the_rating_category() -> None:
    three = copy.deepcopy(ZENDESK_CSAT_ANSWER)
    three["question"]["options"] = [{"id": str(v), "rating": v} for v in (1, 2, 3)]
    three["rating"], three["rating_category"] = 3, "good"
    row = zendesk.survey_response_row({**ZENDESK_SURVEY_RESPONSE, "answers": [three]})
    assert row is not None and (row["scale"], row["is_positive"]) == ("1-3", True)
    bare = copy.deepcopy(ZENDESK_CSAT_ANSWER)
    del bare["question"]["options"]
    bare["rating"], bare["rating_category"] = 2, "bad"
    row = zendesk.survey_response_row({**ZENDESK_SURVEY_RESPONSE, "answers": [bare]})
    assert row is not None and (row["scale"], row["is_positive"]) == (zendesk.CATEGORY_SCALE, False)


@pytest.mark.parametrize("via, role", [
    ({"channel": "rule", "source": {"from": {"id": 1, "title": "Notify"}, "to": {}, "rel": "trigger"}}, "system"),
    ({"channel": "web", "source": {"from": {}, "to": {}, "rel": "automation"}}, "system"),
    ({"channel": "web", "source": {"from": {"ticket_id": 5099}, "to": {}, "rel": "merge"}}, "system"),
    ("Rule", "system"),  # the display name of ticket-events updates (errata)
    ("Web form", None),
    (8, "system"),  # numeric via id of a business rule
    ({"channel": 8}, "system"),
    ("8", "system"),
    ({"channel": 29}, None),  # chat: a person
    ({"channel": "ai_agent"}, "bot"),
    ("Answer Bot", "bot"),
])
def test_zendesk_via_in_every_form_tells_rules_and_ai_agents(via: Any, role: str | None) -> None:
    event = {"id": 77001, "ticket_id": 5101, "created_at": "2024-03-01T09:07:00Z",
             "child_events": [{"id": 77002, "event_type": "Comment", "author_id": 700, "public": True, "via": via}]}
    [(_, message)] = list(zendesk.event_rows(event))
    assert message["author_role"] == role


def test_zendesk_comment_without_its_own_via_takes_its_audits() -> None:
    """An event carries `via` only where it differs from the audit's; here the audit's is "Rule"."""
    event = {"id": 77001, "ticket_id": 5101, "created_at": "2024-03-01T09:07:00Z", "via": "Rule",
             "child_events": [{"id": 77002, "event_type": "Comment", "author_id": 700, "public": True}]}
    [(_, message)] = list(zendesk.event_rows(event))
    assert message["author_role"] == "system"


ZENDESK_METRIC_SET: dict[str, Any] = {
    "id": 88101, "ticket_id": 5101, "reopens": 0, "replies": 1,
    "reply_time_in_minutes": {"calendar": 34, "business": 34},
    "first_resolution_time_in_minutes": {"calendar": 72, "business": 72},
    "full_resolution_time_in_minutes": {"calendar": 72, "business": 72},
    "solved_at": "2024-03-01T10:12:40Z",
}


@pytest.mark.parametrize("where", ["per_ticket", "top_level"])
def test_zendesk_metric_set_is_read_on_the_ticket_or_sideloaded_by_ticket_id(where: str) -> None:
    ticket = {**ZENDESK_TICKET, "metric_set": ZENDESK_METRIC_SET} if where == "per_ticket" else ZENDESK_TICKET
    sideload = {5101: ZENDESK_METRIC_SET} if where == "top_level" else None
    # Created before start_date: its events are not read, so its facts come from the metric set.
    row = zendesk.contact_row(ticket, {}, {}, "2024-06-01T00:00:00Z", metric_sets=sideload)
    assert (row["vendor"]["reply_time_minutes"], row["first_agent_reply_at"], row["agent_replies"]) == (
        34, "2024-03-01T09:34:05Z", 1)


def test_zendesk_ticket_closed_by_merge_is_merged() -> None:
    merged = {**ZENDESK_TICKET, "status": "closed", "tags": ["billing", "closed_by_merge"]}
    row = zendesk.contact_row(merged, {}, {}, "2024-01-01T00:00:00Z")
    assert (row["status"], row.get("merged_into")) == ("merged", None)  # the ticket does not name its survivor
    closed = zendesk.contact_row({**ZENDESK_TICKET, "status": "closed"}, {}, {}, "2024-01-01T00:00:00Z")
    assert closed["status"] == "closed"


@pytest.mark.parametrize("channel, expected", [
    ("instagram_dm", ("social", "instagram")), ("chat", ("chat", "web_chat")),
    ("whatsapp", ("messaging", "whatsapp")), ("facebook", ("social", "facebook")),
    ("twitter", ("social", "twitter")), ("line", ("messaging", "line")), ("wechat", ("messaging", "wechat")),
    ("telegram", ("messaging", "telegram")), ("viber", ("messaging", "viber")), ("sms", ("messaging", "sms")),
    ("apple_business_chat", ("messaging", "apple_messages")), ("native_messaging", ("messaging", "web_chat")),
    ("email", ("email", "email")), ("web", ("web_form", "web_form")), (4, ("email", "email")),
    ("sample_ticket", ("other", "other")),
])
def test_zendesk_platform_names_the_network_else_the_channel(channel: Any, expected: tuple[str, str]) -> None:
    row = zendesk.contact_row({**ZENDESK_TICKET, "via": {"channel": channel, "source": {}}}, {}, {},
                              "2024-01-01T00:00:00Z")
    assert (row["channel"], row["platform"]) == expected


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
        "handle_seconds": 900.0}  # adjusted_handling_time, not handling_time (catalogue 2c)
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
    ({"type": "bot", "id": "1"}, "bot"),  # Operator and custom bots are bots too (catalogue 2c)
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


# --- Intercom: the documented example payloads of the 2.14 specification (intercom/Intercom-OpenAPI,
# descriptions/2.14/api.intercom.io.yaml, MIT): `GET /conversations/{id}` "conversation found", the parts of
# the `POST /conversations/{id}/parts` examples (close, open, assign, snooze) and of the
# `POST /conversations/{id}/reply` "User reply" example. Copied verbatim.

IC_GET_CONVERSATION: dict[str, Any] = {'type': 'conversation',
 'id': '503',
 'created_at': 1734537511,
 'updated_at': 1734537511,
 'waiting_since': None,
 'snoozed_until': None,
 'source': {'type': 'conversation',
            'id': '403918334',
            'delivered_as': 'admin_initiated',
            'subject': '',
            'body': '<p>this is the message body</p>',
            'author': {'type': 'admin', 'id': '991267645', 'name': 'Ciaran176 Lee', 'email': 'admin176@email.com'},
            'attachments': [],
            'url': None,
            'redacted': False},
 'contacts': {'type': 'contact.list',
              'contacts': [{'type': 'contact', 'id': '6762f1261bb69f9f2193bba7', 'external_id': '70'}]},
 'first_contact_reply': None,
 'admin_assignee_id': 991267715,
 'team_assignee_id': 5017691,
 'open': False,
 'state': 'closed',
 'read': False,
 'tags': {'type': 'tag.list',
          'tags': [{'type': 'tag',
                    'id': '123456',
                    'name': 'Test tag',
                    'applied_at': 1663597223,
                    'applied_by': {'type': 'contact', 'id': '1a2b3c'}}]},
 'priority': 'not_priority',
 'sla_applied': None,
 'statistics': None,
 'conversation_rating': None,
 'teammates': None,
 'title': None,
 'custom_attributes': {},
 'topics': {},
 'ticket': None,
 'linked_objects': {'type': 'list', 'data': [], 'total_count': 0, 'has_more': False},
 'ai_agent': None,
 'ai_agent_participated': False,
 'conversation_parts': {'type': 'conversation_part.list',
                        'conversation_parts': [{'type': 'conversation_part',
                                                'id': 1,
                                                'part_type': 'comment',
                                                'body': '<p>Okay!</p>',
                                                'created_at': 1663597223,
                                                'updated_at': 1663597260,
                                                'notified_at': 1663597260,
                                                'assigned_to': {'type': 'contact', 'id': '1a2b3c'},
                                                'author': {'type': 'admin',
                                                           'id': '274',
                                                           'name': 'Operator',
                                                           'email': 'operator+abcd1234@intercom.io'},
                                                'attachments': [],
                                                'external_id': 'abcd1234',
                                                'redacted': False,
                                                'email_message_metadata': None,
                                                'state': 'open',
                                                'tags': [{'type': 'tag', 'id': '123456', 'name': 'Test tag'}],
                                                'event_details': None,
                                                'app_package_code': None},
                                               {'type': 'conversation_part',
                                                'id': 2,
                                                'part_type': 'custom_action_started',
                                                'body': None,
                                                'created_at': 1740141842,
                                                'updated_at': 1740141842,
                                                'notified_at': 1740141842,
                                                'assigned_to': None,
                                                'author': {'type': 'admin',
                                                           'id': '274',
                                                           'name': 'Jamie Oliver',
                                                           'email': 'jamie+abcd1234@intercom.io'},
                                                'attachments': [],
                                                'external_id': None,
                                                'redacted': False,
                                                'email_message_metadata': None,
                                                'state': 'open',
                                                'tags': [],
                                                'event_details': {'action': {'name': 'Jira Create Issue'}},
                                                'app_package_code': 'test-integration'},
                                               {'type': 'conversation_part',
                                                'id': 3,
                                                'part_type': 'conversation_attribute_updated_by_admin',
                                                'body': None,
                                                'created_at': 1740141851,
                                                'updated_at': 1740141851,
                                                'notified_at': 1740141851,
                                                'assigned_to': None,
                                                'author': {'type': 'bot',
                                                           'id': '278',
                                                           'name': 'Fin',
                                                           'email': 'operator+abcd1234@intercom.io'},
                                                'attachments': [],
                                                'external_id': None,
                                                'redacted': False,
                                                'email_message_metadata': None,
                                                'state': 'open',
                                                'tags': [],
                                                'event_details': {'attribute': {'name': 'jira_issue_key'},
                                                                  'value': {'name': 'PROJ-007'}},
                                                'app_package_code': None},
                                               {'type': 'conversation_part',
                                                'id': 4,
                                                'part_type': 'custom_action_finished',
                                                'body': None,
                                                'created_at': 1740141857,
                                                'updated_at': 1740141857,
                                                'notified_at': 1740141857,
                                                'assigned_to': None,
                                                'author': {'type': 'admin',
                                                           'id': '274',
                                                           'name': 'Jamie Oliver',
                                                           'email': 'jamie+abcd1234@intercom.io'},
                                                'attachments': [],
                                                'external_id': None,
                                                'redacted': False,
                                                'email_message_metadata': None,
                                                'state': 'closed',
                                                'tags': [],
                                                'event_details': {'action': {'name': 'Jira Create Issue',
                                                                             'result': 'success'}},
                                                'app_package_code': None}],
                        'total_count': 4}}

IC_CLOSE_PART: dict[str, Any] = {'type': 'conversation_part',
 'id': '136',
 'part_type': 'close',
 'body': '<p>Goodbye :)</p>',
 'created_at': 1734537584,
 'updated_at': 1734537584,
 'notified_at': 1734537584,
 'assigned_to': None,
 'author': {'id': '991267708', 'type': 'admin', 'name': 'Ciaran219 Lee', 'email': 'admin219@email.com'},
 'attachments': [],
 'external_id': None,
 'redacted': False,
 'metadata': {},
 'email_message_metadata': None,
 'app_package_code': None}

IC_OPEN_PART: dict[str, Any] = {'type': 'conversation_part',
 'id': '139',
 'part_type': 'open',
 'body': None,
 'created_at': 1734537601,
 'updated_at': 1734537601,
 'notified_at': 1734537601,
 'assigned_to': None,
 'author': {'id': '991267712', 'type': 'admin', 'name': 'Ciaran221 Lee', 'email': 'admin221@email.com'},
 'attachments': [],
 'external_id': None,
 'redacted': False,
 'metadata': {},
 'email_message_metadata': None,
 'app_package_code': None}

IC_ASSIGN_AND_REOPEN_PART: dict[str, Any] = {'type': 'conversation_part',
 'id': '140',
 'part_type': 'assign_and_reopen',
 'body': None,
 'created_at': 1734537605,
 'updated_at': 1734537605,
 'notified_at': 1734537605,
 'assigned_to': {'type': 'admin', 'id': '991267715'},
 'author': {'id': '991267715', 'type': 'admin', 'name': 'Ciaran223 Lee', 'email': 'admin223@email.com'},
 'attachments': [],
 'external_id': None,
 'redacted': False,
 'metadata': {},
 'email_message_metadata': None,
 'app_package_code': None}

IC_SNOOZE_PART: dict[str, Any] = {'type': 'conversation_part',
 'id': '137',
 'part_type': 'snoozed',
 'body': None,
 'created_at': 1734537587,
 'updated_at': 1734537587,
 'notified_at': 1734537587,
 'assigned_to': None,
 'author': {'id': '991267710', 'type': 'admin', 'name': 'Ciaran220 Lee', 'email': 'admin220@email.com'},
 'attachments': [],
 'external_id': None,
 'redacted': False,
 'metadata': {},
 'email_message_metadata': None,
 'app_package_code': None}

IC_USER_REPLY_PART: dict[str, Any] = {'type': 'conversation_part',
 'id': '132',
 'part_type': 'open',
 'body': '<p>Thanks again :)</p>',
 'created_at': 1734537561,
 'updated_at': 1734537561,
 'notified_at': 1734537561,
 'assigned_to': None,
 'author': {'id': '6762f1571bb69f9f2193bbbb', 'type': 'user', 'name': 'Joe Bloggs', 'email': 'joe@bloggs.com'},
 'attachments': [],
 'external_id': None,
 'redacted': False,
 'metadata': {},
 'email_message_metadata': None,
 'app_package_code': None}



def _parts_in_one_second(at: int) -> list[dict[str, Any]]:
    """The documented parts as the API lists them: closed, reopened by the customer's reply in the same
    second (ids "136" then "132": the API's order is not the ids' text order), closed again, opened by an
    admin, then assigned and reopened while already open."""
    close_again = {**IC_CLOSE_PART, "id": "138", "body": None}
    timed = [(IC_CLOSE_PART, at), (IC_USER_REPLY_PART, at), (close_again, at + 20), (IC_OPEN_PART, at + 40),
             (IC_ASSIGN_AND_REOPEN_PART, at + 44)]
    return [{**part, "created_at": t, "updated_at": t, "notified_at": t} for part, t in timed]


def test_intercom_documented_conversation_with_its_parts() -> None:
    conversation = {k: v for k, v in IC_GET_CONVERSATION.items() if k != "conversation_parts"}
    parts = IC_GET_CONVERSATION["conversation_parts"]["conversation_parts"]
    rows = intercom_rows(conversation, parts)
    [contact] = rows["contacts"]
    assert {k: contact[k] for k in ("source_id", "channel", "platform", "status", "assignee_id", "group_id",
                                    "requester_id", "ticket_type", "is_outbound", "tags")} == {
        "source_id": "503", "channel": "chat", "platform": "web_chat", "status": "closed",
        "assignee_id": "991267715", "group_id": "5017691", "requester_id": "6762f1261bb69f9f2193bba7",
        "ticket_type": None, "is_outbound": True, "tags": ["Test tag"]}
    assert [(m["source_id"], m["author_role"], m["public"]) for m in rows["messages"]] == [
        ("503:source", "agent", True), ("1", "agent", True)]
    # No `close` part, but the last part shows the conversation closed: that is when it was resolved.
    assert [(e["source_id"], e["kind"]) for e in rows["status_events"]] == [("4", "resolved")]


def test_intercom_parts_keep_the_apis_order_and_reopen_once_per_closed_spell() -> None:
    at = 1734537584
    conversation = {**{k: v for k, v in IC_GET_CONVERSATION.items() if k != "conversation_parts"},
                    "state": "open", "open": True}
    rows = intercom_rows(conversation, _parts_in_one_second(at))
    assert [(e["source_id"], e["kind"], e["at"]) for e in rows["status_events"]] == [
        ("136", "resolved", "2024-12-18T15:59:44Z"), ("132", "reopened", "2024-12-18T15:59:44Z"),
        ("138", "resolved", "2024-12-18T16:00:04Z"), ("139", "reopened", "2024-12-18T16:00:24Z")]
    # The admin's closing message and the customer's reply are messages; bare state changes are not.
    assert [(m["source_id"], m["author_role"], m["public"]) for m in rows["messages"]] == [
        ("503:source", "agent", True), ("136", "agent", True), ("132", "customer", True)]


@pytest.mark.parametrize("part", [IC_CLOSE_PART, IC_SNOOZE_PART, IC_OPEN_PART, IC_ASSIGN_AND_REOPEN_PART,
                                  IC_USER_REPLY_PART], ids=lambda p: p["id"])
def test_intercom_documented_parts_have_no_state_and_still_give_the_history(part: dict[str, Any]) -> None:
    assert "state" not in part  # the documented parts carry none: the part type decides
    closed_first = [{**IC_CLOSE_PART, "id": "100", "body": None}, part]
    kinds = [kind.value for kind, _ in intercom.status_history(closed_first)]
    reopening = part["part_type"] in ("open", "assign_and_reopen", "snoozed")  # a state other than closed
    assert kinds == (["resolved", "reopened"] if reopening else ["resolved"])


_NO_ASSIGNEE_KEYS = ("admin_assignee_id", "team_assignee_id")


@pytest.mark.parametrize("assignment, admin, team", [
    ({"admin_assignee_id": 991267715, "team_assignee_id": 5017691}, "991267715", "5017691"),  # 2.14, documented
    ({"admin_assignee_id": "0", "team_assignee_id": "0"}, None, None),  # the 2.14 ticket examples: nobody
    ({"assignee": {"type": "admin", "id": "991267715"}}, "991267715", None),  # older payloads nest it
    ({"assignee": {"type": "team", "id": "5017691"}}, None, "5017691"),
    ({"assignee": {"type": "nobody_admin", "id": None}}, None, None),
], ids=["admin_assignee_id", "zero", "nested-admin", "nested-team", "nested-nobody"])
def test_intercom_assignee_in_both_shapes(assignment: dict[str, Any], admin: str | None, team: str | None) -> None:
    conversation = {k: v for k, v in IC_GET_CONVERSATION.items()
                    if k != "conversation_parts" and k not in _NO_ASSIGNEE_KEYS}
    [contact] = intercom_rows({**conversation, **assignment}, [])["contacts"]
    assert (contact["assignee_id"], contact["group_id"]) == (admin, team)


def test_intercom_ticket_type_only_from_an_older_ticket_property() -> None:
    conversation = {k: v for k, v in IC_GET_CONVERSATION.items() if k not in ("conversation_parts", "ticket")}
    [contact] = intercom_rows(conversation, [])["contacts"]  # 2.14: no `ticket` property at all
    assert contact["ticket_type"] is None
    older = {**conversation, "ticket": {"type": "ticket", "ticket_type": {"type": "ticket_type", "name": "Bug"}}}
    [contact] = intercom_rows(older, [])["contacts"]
    assert contact["ticket_type"] == "Bug"


@pytest.mark.parametrize("source_type, channel, platform", [
    ("conversation", "chat", "web_chat"), ("whatsapp", "messaging", "whatsapp"), ("sms", "messaging", "sms"),
    ("instagram", "social", "instagram"), ("facebook", "social", "facebook"), ("twitter", "social", "twitter"),
    ("email", "email", "email"), ("phone_call", "phone", "phone"), ("phone_switch", "phone", "phone"),
    ("push", "messaging", "messaging"), ("something_new", "other", "other"),
])
def test_intercom_platform_from_the_source_type(source_type: str, channel: str, platform: str) -> None:
    conversation = {k: v for k, v in IC_GET_CONVERSATION.items() if k != "conversation_parts"}
    conversation["source"] = {**conversation["source"], "type": source_type}
    [contact] = intercom_rows(conversation, [])["contacts"]
    assert (contact["channel"], contact["platform"]) == (channel, platform)
    deleted = intercom.deleted_row(conversation)
    assert (deleted["channel"], deleted["platform"]) == (channel, platform)


@pytest.mark.parametrize("attribute, kind, options", [
    # The 2.14 schema `data_attribute`: `options` is an array of strings (its own example pairs them with a
    # boolean); a dropdown is a string attribute with options.
    ({"name": "paid_subscriber", "data_type": "boolean", "options": ["true", "false"], "custom": True},
     "checkbox", ("true", "false")),
    ({"name": "plan", "data_type": "string", "options": ["free", "pro"], "custom": True}, "dropdown",
     ("free", "pro")),
    ({"name": "plan", "data_type": "string", "options": [{"value": "free"}, {"value": "pro"}], "custom": True},
     "dropdown", ("free", "pro")),  # the shape POST /data_attributes takes
    ({"name": "note", "data_type": "string", "custom": True}, "text", ()),
])
def test_intercom_data_attribute_options_are_strings(attribute: dict[str, Any], kind: str,
                                                     options: tuple[str, ...]) -> None:
    field = intercom_writer._field_def("contact", attribute)
    assert (field.type, field.options) == (kind, options)


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


# Catalogue 2c: the codes 1-13 of the reference's Errata, with their platform (else the channel).
@pytest.mark.parametrize("code, channel, platform", [
    (1, "email", "email"), (2, "web_form", "web_form"), (3, "phone", "phone"), (4, "social", "social"),
    (5, "social", "twitter"), (6, "social", "facebook"), (7, "chat", "web_chat"), (8, "web_form", "mobile_app"),
    (9, "web_form", "web_form"), (10, "email", "email"), (11, "email", "marketplace"), (12, "chat", "chat"),
    (13, "messaging", "whatsapp"), (14, "other", "other"), (99, "other", "other")])
def test_freshdesk_source_codes(code: int, channel: str, platform: str) -> None:
    row = fd.ticket_fields({**FRESHDESK_TICKETS[1], "source": code}, NOTHING_PERSONAL)
    assert (row["channel"], row["platform"]) == (channel, platform)


def test_freshdesk_documented_example_tickets_carry_their_platform() -> None:
    assert [fd.ticket_fields(t, NOTHING_PERSONAL)["platform"] for t in FRESHDESK_TICKETS] == ["email", "web_chat"]


# Freshdesk's documented time entry (API reference, "Start/Stop Timer" response), and the same
# entry as the reference's Errata says accounts send it, with `time_spent_in_seconds`.
FRESHDESK_TIME_ENTRY: dict[str, Any] = {
    "id": 1, "billable": True, "note": "Monthly Invoice Prepartion", "timer_running": False, "agent_id": 1,
    "ticket_id": 20, "time_spent": "11:41", "created_at": "2015-08-24T13:21:50Z",
    "updated_at": "2015-08-25T07:12:39Z", "start_time": "2015-08-25T07:11:22Z", "executed_at": "2015-08-24T13:21:49Z"}


def test_freshdesk_time_entry_uses_seconds_and_falls_back_to_hh_mm() -> None:
    assert fd.time_entry(FRESHDESK_TIME_ENTRY) == ("20", 11 * 3600 + 41 * 60.0)
    assert fd.time_entry({**FRESHDESK_TIME_ENTRY, "time_spent_in_seconds": 42_097}) == ("20", 42_097.0)
    assert fd.time_entry({**FRESHDESK_TIME_ENTRY, "time_spent": None, "time_spent_in_seconds": 59}) == ("20", 59.0)
    for bad in ("an hour", True, -5):
        with pytest.raises(fd.RecordError, match="time_spent_in_seconds"):
            fd.time_entry({**FRESHDESK_TIME_ENTRY, "time_spent_in_seconds": bad})
    with pytest.raises(fd.RecordError, match="time_spent"):
        fd.time_entry({**FRESHDESK_TIME_ENTRY, "time_spent": "11:41:07"})


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


@pytest.mark.parametrize("avatar", [
    "https://static.intercomassets.com/avatars/1/square_128/a.png",  # 2.14 `admin` schema (GET /admins): a URL
    {"type": "avatar", "image_url": "https://static.intercomassets.com/a.png"},  # `admin_with_app` (GET /me)
    {"type": "avatar", "image_url": None},
    None,
])
def test_intercom_admin_avatar_in_either_documented_form(avatar: Any) -> None:
    row = intercom.admin_row({"type": "admin", "id": "5512", "name": "Lee", "email": "lee@acme.com",
                              "avatar": avatar})
    assert row["source_id"] == "5512" and row["role"] == "agent"
    assert "avatar" not in json.dumps(row["raw"])  # an image of a person: never kept


def test_zendesk_comment_flags_without_comment_events_make_no_message() -> None:
    """Without include=comment_events a comment is only a `Comment` child with comment_present/comment_public."""
    event = {"id": 77001, "ticket_id": 5101, "created_at": "2024-03-01T09:07:00Z", "via": "Web form",
             "child_events": [{"id": 77002, "event_type": "Comment", "via": "Web form", "via_reference_id": None,
                               "comment_present": True, "comment_public": True},
                              {"id": 77003, "event_type": "Change", "via": "Web form", "via_reference_id": None,
                               "status": "solved", "previous_value": "open"}]}
    assert [table for table, _ in zendesk.event_rows(event)] == ["status_events"]


@pytest.mark.parametrize("shown, channel", [
    ("Web form", "web"), ("Rule", "rule"), ("Mail", "email"), ("Web service", "api"), ("Phone call (inbound)", "voice"),
    ("Voicemail", "voice"), ("Help Center", "help_center"), ("Instagram Direct", "instagram_dm"),
    ("Answer Bot", "answer_bot"),
])
def test_zendesk_via_display_names_read_back_to_channels(shown: str, channel: str) -> None:
    assert zendesk.via_channel(shown) == channel


# --- Zendesk, catalogue 2c (issue 15) ----------------------------------------------------------------------

ZENDESK_VOICE_COMMENT: dict[str, Any] = {
    "id": 77100, "event_type": "VoiceComment", "type": "VoiceComment", "author_id": 700, "public": False,
    "body": "Inbound call from +1 555 0100", "attachments": [], "audit_id": 77099, "created_at": "2024-03-01T09:05:00Z",
    "data": {"from": "+15550100", "to": "+15550199", "recording_url": None, "call_duration": 300,
             "answered_by_id": 700, "started_at": "2024-03-01T09:00:00Z", "location": "Dublin, Ireland"},
    "via": {"channel": "voice", "source": {"from": {}, "to": {}, "rel": "inbound"}}}


@pytest.mark.parametrize("change, messages", [
    ({}, [("77100", None, "customer", "2024-03-01T09:00:00Z"), ("77100:answer", "700", "agent",
                                                                 "2024-03-01T09:00:00Z")]),
    # A voicemail: the caller's contact, nobody answered it.
    ({"data": {**ZENDESK_VOICE_COMMENT["data"], "answered_by_id": None},
      "via": {"channel": "voice", "source": {"rel": "voicemail"}}}, [("77100", None, "customer",
                                                                        "2024-03-01T09:00:00Z")]),
    # An agent's call the customer did not take: no contact from them at all.
    ({"data": {**ZENDESK_VOICE_COMMENT["data"], "answered_by_id": None},
      "via": {"channel": "voice", "source": {"rel": "outbound"}}}, []),
    # A voice comment given as a Comment event of type VoiceComment, without started_at: dated by the comment.
    ({"event_type": "Comment", "data": {"call_duration": 60, "answered_by_id": 701}},
     [("77100", None, "customer", "2024-03-01T09:05:00Z"), ("77100:answer", "701", "agent", "2024-03-01T09:05:00Z")]),
])
def test_zendesk_talk_call_is_the_customers_contact_answered_by_its_agent(
        change: dict[str, Any], messages: list[tuple[str, str | None, str, str]]) -> None:
    event = {"id": 77099, "ticket_id": 5101, "created_at": "2024-03-01T09:05:00Z", "via": "Phone call (inbound)",
             "child_events": [{**ZENDESK_VOICE_COMMENT, **change}]}
    rows = [r for t, r in zendesk.event_rows(event) if t == "messages"]
    assert [(r["source_id"], r["author_id"], r["author_role"], r["created_at"]) for r in rows] == messages
    assert all(r["public"] for r in rows)


def test_zendesk_talk_handle_time_sums_the_answered_calls() -> None:
    voicemail = {**ZENDESK_VOICE_COMMENT, "data": {"call_duration": 40, "answered_by_id": None}}
    second = {**ZENDESK_VOICE_COMMENT, "data": {"call_duration": 180, "answered_by_id": 701}}
    written = {"id": 1, "type": "Comment", "author_id": 700, "public": True, "body": "x"}
    assert zendesk.call_seconds([ZENDESK_VOICE_COMMENT, voicemail, second, written]) == 480.0
    assert zendesk.call_seconds([voicemail, written]) is None  # no call anyone handled: unknown, not 0


@pytest.mark.parametrize("value, seconds", [(1200, 1200.0), ("1200", 1200.0), ("90.5", 90.5), (0, None), ("", None),
                                            (None, None), ("n/a", None), (True, None), (-5, None)])
def test_zendesk_time_tracking_field_is_a_handle_time_record(value: Any, seconds: float | None) -> None:
    ticket = {**ZENDESK_TICKET, "custom_fields": [{"id": 360001, "value": value}]}
    row = zendesk.contact_row(ticket, {}, {}, "2024-01-01T00:00:00Z", handle_field="360001")
    assert row.get("handle_seconds") == seconds


def test_zendesk_status_change_in_the_audit_form_is_read_too() -> None:
    event = {"id": 78001, "ticket_id": 5101, "created_at": "2024-03-02T10:00:00Z",
             "child_events": [{"id": 78002, "event_type": "Change", "field_name": "status", "value": "open",
                               "previous_value": "solved"},
                              {"id": 78003, "event_type": "Change", "field_name": "priority", "value": "high",
                               "previous_value": "normal"}]}
    rows = list(zendesk.event_rows(event))
    assert [r["kind"] for t, r in rows if t == "status_events"] == ["reopened"]


def test_zendesk_bot_agent_ids_make_an_agent_seat_a_bot() -> None:
    event = {"id": 77001, "ticket_id": 5101, "created_at": "2024-03-01T09:07:00Z",
             "child_events": [{"id": 77002, "event_type": "Comment", "author_id": 750, "public": True,
                               "via": {"channel": "web"}},
                              {"id": 77003, "event_type": "Comment", "author_id": 750, "public": True,
                               "via": {"channel": "rule", "source": {"rel": "trigger"}}}]}
    roles = [r["author_role"] for _, r in zendesk.event_rows(event, bot_ids=frozenset({"750"}))]
    assert roles == ["bot", "system"]  # a trigger stays a trigger whoever it runs as
    seat = {"id": 750, "role": "agent", "locale": "en-US"}
    assert zendesk.person_row(seat, bot_ids=frozenset({"750"}))["role"] == "bot"
    assert zendesk.person_role_row(seat, frozenset({"750"}))["role"] == "bot"
    assert zendesk.person_role_row(seat)["role"] == "agent"


@pytest.mark.parametrize("via", [{"channel": "answer_bot_for_web_widget"}, {"channel": "ai_agent"},
                                 {"channel": "answer_bot_api"}])
def test_zendesk_answer_bot_via_types_are_bot_messages(via: dict[str, Any]) -> None:
    event = {"id": 77001, "ticket_id": 5101, "created_at": "2024-03-01T09:07:00Z",
             "child_events": [{"id": 77002, "event_type": "Comment", "author_id": 700, "public": True, "via": via}]}
    [(_, message)] = list(zendesk.event_rows(event))
    assert message["author_role"] == "bot"


@pytest.mark.parametrize("ticket, users, outbound", [
    ({"submitter_id": 700, "requester_id": 9001}, {700: {"role": "agent"}}, True),
    ({"submitter_id": 700, "requester_id": 700}, {700: {"role": "admin"}}, True),  # the first comment is an agent's
    ({"submitter_id": 9001, "requester_id": 9001}, {9001: {"role": "end-user"}}, False),
    ({"submitter_id": 750, "requester_id": 9001}, {}, True),  # a bot seat (bot_agent_ids) opened it
    ({"submitter_id": 4242, "requester_id": 9001}, {}, None),  # the submitter is unknown: not decided here
    ({"submitter_id": 700, "requester_id": 9001, "via": {"channel": "voice", "source": {"rel": "outbound"}}},
     {700: {"role": "agent"}}, False),  # a voice ticket: the call is the customer's contact
])
def test_zendesk_outbound_is_a_ticket_whose_first_comment_is_an_agents(
        ticket: dict[str, Any], users: dict[int, Any], outbound: bool | None) -> None:
    row = zendesk.contact_row({**ZENDESK_TICKET, **ticket}, users, {}, "2024-01-01T00:00:00Z",
                              bot_ids=frozenset({"750"}))
    assert row.get("is_outbound") == outbound


def test_zendesk_outbound_ticket_before_start_date_has_no_reply_without_a_customer_message() -> None:
    ticket = {**ZENDESK_TICKET, "submitter_id": 700, "metric_set": {**ZENDESK_METRIC_SET, "requester_updated_at": None}}
    row = zendesk.contact_row(ticket, {700: {"role": "agent"}}, {}, "2024-06-01T00:00:00Z")
    assert (row["first_agent_reply_at"], row["agent_replies"], row["customer_messages"]) == (None, 0, 0)
    answered = {**ticket, "metric_set": {**ZENDESK_METRIC_SET, "requester_updated_at": "2024-03-01T09:20:00Z"}}
    row = zendesk.contact_row(answered, {700: {"role": "agent"}}, {}, "2024-06-01T00:00:00Z")
    assert (row["first_agent_reply_at"], row["agent_replies"]) == ("2024-03-01T09:34:05Z", 1)


@pytest.mark.parametrize("options, rating, scale, positive", [
    (range(1, 5), 4, "1-4", True), (range(1, 5), 3, "1-4", False),  # 1-4: top 20 % of 3 points = 4
    (range(0, 6), 5, "0-5", True), (range(0, 6), 4, "0-5", False),
    (range(1, 8), 6, "1-7", True), (range(1, 11), 9, "1-10", True), (range(0, 11), 8, "0-10", False),
    (range(1, 6), 7, "1-5", None),  # outside the question's options: undecidable, counted nowhere
])
def test_zendesk_new_csat_positivity_on_any_options_range(options: range, rating: int, scale: str,
                                                          positive: bool | None) -> None:
    answer = copy.deepcopy(ZENDESK_CSAT_ANSWER)
    answer["question"]["options"] = [{"id": str(v), "rating": v} for v in options]
    answer["rating"] = rating
    row = zendesk.survey_response_row({**ZENDESK_SURVEY_RESPONSE, "answers": [answer]})
    assert row is not None and (row["scale"], row["is_positive"]) == (scale, positive)


def test_zendesk_new_csat_takes_the_customer_satisfaction_question_over_an_untyped_one() -> None:
    untyped = copy.deepcopy(ZENDESK_CSAT_ANSWER)
    del untyped["question"]["sub_type"]
    untyped["rating"] = 1
    other = {**copy.deepcopy(ZENDESK_CSAT_ANSWER), "rating": 2}
    other["question"]["sub_type"] = "other"
    row = zendesk.survey_response_row({**ZENDESK_SURVEY_RESPONSE, "answers": [other, untyped, ZENDESK_CSAT_ANSWER]})
    assert row is not None and row["score"] == 4.0
    row = zendesk.survey_response_row({**ZENDESK_SURVEY_RESPONSE, "answers": [other, untyped]})
    assert row is not None and row["score"] == 1.0  # no answer names the CSAT question: the untyped one
    assert zendesk.survey_response_row({**ZENDESK_SURVEY_RESPONSE, "answers": [other]}) is None
    bare = copy.deepcopy(ZENDESK_CSAT_ANSWER)
    del bare["question"]["options"], bare["rating_category"]
    row = zendesk.survey_response_row({**ZENDESK_SURVEY_RESPONSE, "answers": [bare]})
    assert row is not None and row["is_positive"] is None  # no options, no category: undecidable


@pytest.mark.parametrize("channel, expected", [
    ("tiktok", ("messaging", "tiktok")), ("twilio_sms", ("messaging", "sms")), (45, ("phone", "phone")),
    ("sunshine_conversations_facebook_messenger", ("social", "facebook")), ("chat_transcript", ("chat", "web_chat")),
])
def test_zendesk_platform_of_further_via_types(channel: Any, expected: tuple[str, str]) -> None:
    row = zendesk.contact_row({**ZENDESK_TICKET, "via": {"channel": channel, "source": {}}}, {}, {},
                              "2024-01-01T00:00:00Z")
    assert (row["channel"], row["platform"]) == expected


# --- Freshdesk: catalogue 2c readings of single payloads ------------------------------------------------------

from kpi_core.model import Channel, Status  # noqa: E402  (appended cases keep to the end of the file)

FRESHDESK_NOTE: dict[str, Any] = {
    "id": 9100, "ticket_id": 3304, "user_id": 43900, "incoming": False, "private": True, "source": 2,
    "category": 3, "body": '<div>This ticket is closed and merged into ticket <a href="https://acme.freshdesk.com'
    '/a/tickets/3301">#3301</a></div>', "body_text": "This ticket is closed and merged into ticket #3301",
    "support_email": None, "from_email": None, "to_emails": [], "cc_emails": [], "bcc_emails": [],
    "attachments": [], "created_at": "2024-03-01T12:00:00Z", "updated_at": "2024-03-01T12:00:00Z"}


def test_freshdesk_merge_note_marks_a_closed_ticket_merged() -> None:
    closed, resolved = Status.CLOSED, Status.RESOLVED
    assert fd.merge_target(closed, [FRESHDESK_NOTE]) == (True, "3301")
    html_only = {k: v for k, v in FRESHDESK_NOTE.items() if k != "body_text"}
    public = {**FRESHDESK_NOTE, "private": False, "body_text": "This ticket is closed and merged into ticket 3301."}
    assert fd.merge_target(closed, [html_only]) == fd.merge_target(closed, [public]) == (True, "3301")
    assert fd.merge_target(resolved, [FRESHDESK_NOTE]) == (False, None)  # reopened or resolved: a ticket again
    assert fd.merge_target(closed, [{**FRESHDESK_NOTE, "incoming": True}]) == (False, None)  # a customer's words
    assert fd.merge_target(closed, ["not an object"]) == (False, None)
    dutch = {**FRESHDESK_NOTE, "body_text": "Dit ticket is gesloten en samengevoegd met ticket #3301"}
    assert fd.merge_target(closed, [dutch]) == (False, None)
    assert fd.merge_target(closed, [dutch], ("Dit ticket is gesloten en samengevoegd met ticket",)) == (True, "3301")


def test_freshdesk_status_change_out_of_resolved_is_a_reopen_even_without_reopened_at() -> None:
    stats = {**FRESHDESK_TICKETS[0]["stats"], "status_updated_at": "2024-03-02T08:00:00Z"}
    kinds = lambda status: [(e["kind"], e["at"]) for e in fd.status_events("3301", stats, status)]  # noqa: E731
    assert kinds(Status.RESOLVED) == [("resolved", "2024-03-01T11:45:00Z")]
    assert kinds(Status.PENDING) == [("resolved", "2024-03-01T11:45:00Z"), ("reopened", "2024-03-02T08:00:00Z")]
    # `reopened_at` after the resolution says it all: no second reopen.
    reopened = {**stats, "reopened_at": "2024-03-01T20:00:00Z"}
    assert [e["at"] for e in fd.status_events("3301", reopened, Status.OPEN)] == [
        "2024-03-01T11:45:00Z", "2024-03-01T20:00:00Z"]
    # Resolved with no time in `stats`: resolved at its last status change.
    bare = {**stats, "resolved_at": None}
    assert [(e["kind"], e["at"]) for e in fd.status_events("3301", bare, Status.CLOSED)] == [
        ("resolved", "2024-03-02T08:00:00Z")]
    assert fd.status_events("3301", stats) == fd.status_events("3301", stats, Status.RESOLVED)


def test_freshdesk_bot_ticket_carries_a_bot_message_beside_the_customers() -> None:
    bot_ticket = fd.ticket_fields({**FRESHDESK_TICKETS[1], "source": 12}, NOTHING_PERSONAL)
    messages = fd.opening_messages(bot_ticket, 12, "Hi bot", frozenset(), NOTHING_PERSONAL)
    assert [(m["author_role"], m["created_at"], m["public"]) for m in messages] == [
        ("customer", "2024-03-01T11:50:00Z", True), ("bot", "2024-03-01T11:50:00Z", True)]
    chat = fd.ticket_fields(FRESHDESK_TICKETS[1], NOTHING_PERSONAL)
    assert [m["author_role"] for m in fd.opening_messages(chat, 7, None, frozenset(), NOTHING_PERSONAL)] == [
        "customer"]
    # `bot_agent_ids` wins over the flags of a conversation.
    assert fd.author_role("43999", True, frozenset({"43999"}), frozenset({"43999"})) == "bot"
    assert fd.author_role("43900", False, frozenset({"43900"}), frozenset({"43999"})) == "agent"


def test_freshdesk_only_its_seven_codes_are_decidable() -> None:
    decided = {code: fd.is_positive("csat", code, "freshdesk") for code in (103, 102, 101, 100, -101, -102, -103)}
    assert decided == {103: True, 102: True, 101: True, 100: False, -101: False, -102: False, -103: False}
    assert [fd.is_positive("csat", code, "freshdesk") for code in (0, 50, 104, -100)] == [None] * 4
    assert fd.is_positive("nps", 103, "freshdesk") is None


def test_freshdesk_source_codes_the_admin_maps() -> None:
    channels = {**fd.CHANNELS, 14: Channel.MESSAGING, 3: Channel.CHAT}
    row = lambda code: fd.ticket_fields(  # noqa: E731
        {**FRESHDESK_TICKETS[1], "source": code}, NOTHING_PERSONAL, channels, {**fd.PLATFORMS, 14: "telegram"})
    assert [(row(c)["channel"], row(c)["platform"]) for c in (14, 3, 15)] == [
        ("messaging", "telegram"), ("chat", "chat"), ("other", "other")]


@pytest.mark.parametrize("via", [{"channel": "system"}, {"channel": "rule", "source": {"rel": "automation"}}])
def test_zendesk_system_notices_are_neither_replies_nor_bots(via: dict[str, Any]) -> None:
    event = {"id": 77001, "ticket_id": 5101, "created_at": "2024-03-01T09:07:00Z",
             "child_events": [{"id": 77002, "event_type": "Comment", "author_id": 700, "public": True, "via": via}]}
    [(_, message)] = list(zendesk.event_rows(event))
    assert message["author_role"] == "system"


# --- Intercom: catalogue 2c (issue 15) ------------------------------------------------------------------------


def test_intercom_handle_time_is_adjusted_handling_time_never_handling_time() -> None:
    # The reference's example: handling_time 3240 s (assignment to close, waiting included), adjusted 900 s.
    [contact] = intercom_rows(INTERCOM_CONVERSATION, INTERCOM_PARTS)["contacts"]
    assert contact["handle_seconds"] == 900.0
    no_record = copy.deepcopy(INTERCOM_CONVERSATION)
    no_record["statistics"]["adjusted_handling_time"] = None  # nullable in 2.14: left to the live session
    assert intercom_rows(no_record, INTERCOM_PARTS)["contacts"][0]["handle_seconds"] is None
    unanswered = [p for p in INTERCOM_PARTS if p["part_type"] != "comment"]  # no human reply: no handle time
    assert intercom_rows(INTERCOM_CONVERSATION, unanswered)["contacts"][0]["handle_seconds"] is None


@pytest.mark.parametrize("author, bots, role", [
    ({"type": "bot", "id": "279", "name": "Operator"}, frozenset(), "bot"),  # Operator, custom bots: bots too
    ({"type": "bot", "id": "278", "from_ai_agent": True, "is_ai_answer": False}, frozenset(), "bot"),
    ({"type": "admin", "id": "274", "from_ai_agent": False, "is_ai_answer": True}, frozenset(), "bot"),
    ({"type": "admin", "id": "7001"}, frozenset({"7001"}), "bot"),  # the admin's bot_agent_ids
    ({"type": "admin", "id": "5512"}, frozenset({"7001"}), "agent"),
    ({"type": "user", "id": "7001"}, frozenset({"7001"}), "customer"),  # contact ids are another space
])
def test_intercom_bots_are_bot_authors_ai_marks_and_bot_agent_ids(author: dict[str, Any], bots: frozenset[str],
                                                                  role: str) -> None:
    assert intercom.author_role(author, bots).value == role


@pytest.mark.parametrize("delivered_as, author_type, outbound", [
    ("customer_initiated", "user", False), ("operator_initiated", "bot", False),
    ("admin_initiated", "admin", True), ("automated", "admin", True), ("campaigns_initiated", "admin", True),
    ("channel_initiated", "admin", True), ("channel_initiated", "user", False), (None, "user", False),
])
def test_intercom_outbound_by_delivered_as(delivered_as: str | None, author_type: str, outbound: bool) -> None:
    conversation = copy.deepcopy(INTERCOM_CONVERSATION)
    conversation["source"]["author"] = {"type": author_type, "id": "65e1aa01c0ffee0001"}
    conversation["source"]["delivered_as"] = delivered_as
    assert intercom_rows(conversation, INTERCOM_PARTS)["contacts"][0]["is_outbound"] is outbound


@pytest.mark.parametrize("linked, merged_into", [
    ([{"type": "conversation", "id": "70001", "category": None}], "70001"),
    ([], None),
    ([{"type": "conversation", "id": "70001"}, {"type": "conversation", "id": "70002"}], None),
    ([{"type": "ticket", "id": "80001", "category": "Back-office"}], None),
])
def test_intercom_merged_away_conversation_is_merged(linked: list[dict[str, Any]], merged_into: str | None) -> None:
    conversation = {**INTERCOM_CONVERSATION, "linked_objects": {"type": "list", "data": linked}}
    merge = {**INTERCOM_PARTS[1], "id": "1003", "part_type": "merged_secondary_conversation"}
    [contact] = intercom_rows(conversation, [*INTERCOM_PARTS, merge])["contacts"]
    assert (contact["status"], contact["merged_into"]) == ("merged", merged_into)
    [kept] = intercom_rows(conversation, INTERCOM_PARTS)["contacts"]  # no merge part: closed as it is
    assert (kept["status"], kept["merged_into"]) == ("closed", None)


def test_intercom_truncated_conversation_has_no_reply_before_the_customer_wrote() -> None:
    # More parts than returned: facts from statistics, bound by catalogue 2c. An admin reply time before the
    # first contact reply (the spec says it comes after) is no reply; none at all without a customer message.
    conversation = copy.deepcopy(INTERCOM_CONVERSATION)
    conversation["statistics"].update(count_conversation_parts=900, first_contact_reply_at=1709284500,
                                      first_admin_reply_at=1709284020)
    [contact] = intercom_rows(conversation, [INTERCOM_PARTS[1]])["contacts"]
    assert (contact["messages_truncated"], contact["first_agent_reply_at"], contact["agent_replies"]) == (
        True, None, 0)
    outbound = copy.deepcopy(conversation)
    outbound["source"].update(delivered_as="admin_initiated", author={"type": "admin", "id": "5512"})
    outbound["statistics"].update(first_contact_reply_at=None)
    outbound.pop("first_contact_reply", None)
    [contact] = intercom_rows(outbound, INTERCOM_PARTS)["contacts"]
    assert (contact["first_customer_message_at"], contact["first_agent_reply_at"], contact["agent_replies"],
            contact["handle_seconds"]) == (None, None, 0, None)


def test_intercom_rating_outside_one_to_five_is_undecidable_not_a_quarantine() -> None:
    odd = copy.deepcopy(INTERCOM_CONVERSATION)
    odd["conversation_rating"]["rating"] = 0
    [survey] = intercom_rows(odd, INTERCOM_PARTS)["survey_responses"]
    assert (survey["score"], survey["scale"], survey["is_positive"]) == (0.0, "unknown", None)
    odd["conversation_rating"]["rating"] = "five"  # no number at all: no response, the conversation is kept
    rows = intercom_rows(odd, INTERCOM_PARTS)
    assert "survey_responses" not in rows and len(rows["contacts"]) == 1
