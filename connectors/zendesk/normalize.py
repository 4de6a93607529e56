"""Zendesk payloads as normalized rows: pure functions, no HTTP (reference §1, catalogue §1).

Each `*_row` takes one record as the API documents it and returns the row of its table,
raising `RecordError` (or a `KeyError`/`TypeError` of a payload of unexpected shape) for
`connectors.records.keep` to quarantine the record. Field readers name the field, never
echo its value (see `connectors.records`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from connectors.base import PersonalKeys, Privacy, scrub
from connectors.records import Row, epoch_of, flag, iso_time, opt_id, opt_str, record_id
from kpi_core.model import (
    SCALES,
    Channel,
    RecordError,
    Scale,
    is_positive_response,
    iso_utc,
    points_scale,
    primary_language,
)

SOURCE = "zendesk"

# Keys whose values are personal (names, addresses, phone numbers, free text), by the
# [privacy] switch that may keep them; removed from every payload kept as `raw` otherwise.
PERSONAL = PersonalKeys(
    names=frozenset({"name", "alias"}),
    emails=frozenset({"email", "recipient"}),
    phones=frozenset({"phone", "shared_phone_number"}),
    bodies=frozenset({"subject", "raw_subject", "description", "body", "html_body", "plain_body"}),
    comments=frozenset({"comment"}),
    # `from`/`to` (via.source) mix names, addresses, phone numbers and social handles.
    always=frozenset({"signature", "details", "notes", "photo", "remote_photo_url", "external_id", "identities",
                      "from", "to", "address", "domain_names"}),
)
PERSONAL_KEYS = PERSONAL.every()
DEFAULT_PRIVACY = Privacy.choose(PERSONAL)

# A ticket's raw also leaves out its metric_set (kept in `vendor`) and `fields` (a copy of custom_fields).
TICKET_EXTRA_DROP = frozenset({"metric_set", "fields"})
TICKET_RAW_DROP = PERSONAL_KEYS | TICKET_EXTRA_DROP

CHANNELS: dict[str, Channel] = {
    "email": Channel.EMAIL, "web": Channel.WEB_FORM, "help_center": Channel.WEB_FORM, "api": Channel.API,
    "chat": Channel.CHAT, "native_messaging": Channel.MESSAGING, "whatsapp": Channel.MESSAGING,
    "line": Channel.MESSAGING, "wechat": Channel.MESSAGING, "sms": Channel.MESSAGING,
    "mobile_sdk": Channel.MESSAGING, "voice": Channel.PHONE, "twitter": Channel.SOCIAL,
    "facebook": Channel.SOCIAL, "instagram_dm": Channel.SOCIAL,
}
# Channels the catalogue (2c) files under messaging that Zendesk names by network.
CHANNELS.update({"telegram": Channel.MESSAGING, "viber": Channel.MESSAGING, "kakaotalk": Channel.MESSAGING,
                 "apple_business_chat": Channel.MESSAGING, "apple_messages_for_business": Channel.MESSAGING,
                 "google_rcs": Channel.MESSAGING, "messenger": Channel.SOCIAL, "instagram": Channel.SOCIAL,
                 # Messaging networks under the names of Zendesk's via-types table (Sunshine Conversations
                 # integrations, SMS providers) and a chat transcript; names beyond the reference's list are
                 # unconfirmed, so each only adds a name and changes nothing already mapped.
                 "tiktok": Channel.MESSAGING, "twilio_sms": Channel.MESSAGING, "messagebird_sms": Channel.MESSAGING,
                 "sunshine_conversations_facebook_messenger": Channel.SOCIAL,
                 "sunshine_conversations_twitter_dm": Channel.SOCIAL, "chat_transcript": Channel.CHAT})
# `platform` (catalogue 2c): the app or network, spelled once across vendors; else the channel.
PLATFORMS: dict[str, str] = {
    "instagram_dm": "instagram", "instagram": "instagram", "chat": "web_chat", "native_messaging": "web_chat",
    "mobile_sdk": "mobile_app", "whatsapp": "whatsapp", "facebook": "facebook", "messenger": "facebook",
    "twitter": "twitter", "line": "line", "wechat": "wechat", "telegram": "telegram", "viber": "viber",
    "sms": "sms", "kakaotalk": "kakaotalk", "apple_business_chat": "apple_messages",
    "apple_messages_for_business": "apple_messages", "google_rcs": "google_rcs", "tiktok": "tiktok",
    "twilio_sms": "sms", "messagebird_sms": "sms", "sunshine_conversations_facebook_messenger": "facebook",
    "sunshine_conversations_twitter_dm": "twitter", "chat_transcript": "web_chat",
}
# Numeric via ids (Zendesk's via-types table) of the channels the connector tells apart; reference 1.2.
# 33-35 are Talk's voicemail and inbound/outbound calls; 44-46 the same through Talk Partner Edition
# (the `via_id` of its Create Ticket operation in Zendesk's OpenAPI description).
VIA_IDS: dict[int, str] = {4: "email", 5: "api", 8: "rule", 29: "chat", 33: "voice", 34: "voice", 35: "voice",
                           44: "voice", 45: "voice", 46: "voice"}
# Display names, as the update events of the ticket-events export give `via` (errata), lowercased.
VIA_NAMES: dict[str, str] = {"web form": "web", "web": "web", "mail": "email", "email": "email", "rule": "rule",
                             "web service": "api", "api": "api", "chat": "chat", "voice": "voice",
                             "phone call (inbound)": "voice", "phone call (outbound)": "voice", "voicemail": "voice",
                             "help center": "help_center", "instagram direct": "instagram_dm",
                             "answer bot": "answer_bot", "ai agent": "ai_agent"}
# `via.source.rel` of comments written by a business rule (trigger, automation) or by a merge.
SYSTEM_RELS = frozenset({"trigger", "automation", "merge"})
MERGED_TAG = "closed_by_merge"  # widely reported on merged-away tickets, not in Zendesk's reference
STATUSES = {"new": "new", "open": "open", "pending": "pending", "hold": "on_hold", "solved": "resolved",
            "closed": "closed", "deleted": "deleted"}
RESOLVED = frozenset({"solved", "closed"})
PRIORITIES = frozenset({"low", "normal", "high", "urgent"})
# Ticket fields whose changes are kept (contact_changes), by the name the ticket gives them.
CHANGE_FIELDS = {"group_id": "group", "priority": "priority", "assignee_id": "assignee"}
ROLES = {"end-user": "customer", "agent": "agent", "admin": "agent"}
# Business rules (triggers, automations) and Zendesk's own notices (`system`, an example value of
# the audit via object's `channel` in Zendesk's OpenAPI description): neither replies nor bots.
SYSTEM_VIA = frozenset({"rule", "system"})
# The AI agent and answer bot: `answer_bot`, `ai_agent` and the via types named after them
# (`answer_bot_for_web_widget`, `answer_bot_for_sdk`, `answer_bot_api`, ...; their exact list is unconfirmed).
BOT_VIA_PREFIXES = ("answer_bot", "ai_agent")
VOICE_VIA = "voice"
# `via.source.rel` of a Talk voicemail (reference 1.2): the caller left a message, nobody answered.
VOICEMAIL_REL = "voicemail"
OUTBOUND_CALL_REL = "outbound"
# A new-CSAT rating whose question lists no options: its range is unknown, Zendesk's
# `rating_category` (good, neutral, bad) gives its positivity (the KPI engine trusts it).
CATEGORY_SCALE = "zendesk_rating_category"
CSAT_SUB_TYPE = "customer_satisfaction"
COUNTRY_FIELD = "country"  # the user/organization field holding an ISO country code
METRICS = ("reply_time_in_minutes", "first_resolution_time_in_minutes", "full_resolution_time_in_minutes",
           "agent_wait_time_in_minutes", "requester_wait_time_in_minutes", "on_hold_time_in_minutes")


def contact_row(t: Mapping[str, Any], users: Mapping[Any, Any], orgs: Mapping[Any, Any], start_iso: str,
                drop: frozenset[str] = TICKET_RAW_DROP, metric_sets: Mapping[Any, Any] | None = None,
                handle_field: str | None = None, bot_ids: frozenset[str] = frozenset()) -> Row:
    """A ticket as a contact; keys the payload lacks (a deleted ticket's) are left out, so stored values stay.

    The metric set is the ticket's own `metric_set` or, sideloaded top-level by list endpoints,
    the entry of `metric_sets` (keyed by `ticket_id`) for this ticket. A closed ticket tagged
    `closed_by_merge` is `merged`; the ticket names no survivor, so `merged_into` stays empty.
    `handle_field` is the id of the ticket field where a time-tracking app keeps the seconds
    spent on the ticket (catalogue 2c: a configured time-tracking field is a record of handle time).
    """
    created_at = iso_time(t["created_at"], "created_at")
    status = STATUSES.get(t.get("status"))  # type: ignore[arg-type]
    if status is None:
        raise RecordError(f"unknown status {t.get('status')!r}")
    tags = _tags(t)
    if status == "closed" and MERGED_TAG in tags:
        status = "merged"
    channel = via_channel(t.get("via"))
    custom = _custom_fields(t.get("custom_fields"))
    row: Row = {
        "source": SOURCE, "source_id": record_id(t["id"]), "channel": _channel(channel),
        "platform": PLATFORMS.get(channel or "") or _channel(channel), "status": status,
        "created_at": created_at, "updated_at": iso_time(t.get("updated_at"), "updated_at"), "tags": tags,
        "custom": custom, "raw": _compact(t, drop),
    }
    if status == "deleted":
        return row
    metric = t.get("metric_set")
    if metric is None and metric_sets:
        metric = metric_sets.get(t["id"])
    requester = users.get(t.get("requester_id"))
    submitter = users.get(t.get("submitter_id"))
    org = orgs.get(t.get("organization_id"))
    priority = t.get("priority")
    row.update({
        "priority": priority if priority in PRIORITIES else None, "ticket_type": opt_str(t.get("type"), "type"),
        "requester_id": opt_id(t.get("requester_id")), "assignee_id": opt_id(t.get("assignee_id")),
        "group_id": opt_id(t.get("group_id")), "organization_id": opt_id(t.get("organization_id")),
        "brand_id": opt_id(t.get("brand_id")), "vendor": _vendor(metric),
    })
    if requester is not None:
        locale = opt_str(requester.get("locale"), "locale")
        row.update(locale=locale, language=primary_language(locale),
                   country=_country(requester.get("user_fields")) or _country((org or {}).get("organization_fields")))
    outbound = _is_outbound(t, channel, submitter, bot_ids)
    if outbound is not None:
        row["is_outbound"] = outbound
    if handle_field is not None:
        seconds = handle_seconds(custom.get(handle_field))
        if seconds is not None:
            row["handle_seconds"] = seconds
    from_events = created_at >= start_iso  # ISO UTC text sorts as time does
    row["facts_from_events"] = from_events
    if not from_events:
        row.update(_vendor_facts(created_at, metric, outbound is True))
    return row


def _is_outbound(t: Mapping[str, Any], channel: str | None, submitter: Any, bot_ids: frozenset[str]) -> bool | None:
    """Whether an agent (or a bot's agent seat) opened the ticket: catalogue 2c, "its first comment is an agent's".

    Zendesk documents that the submitter always becomes the author of the first comment, so the
    submitter's role tells it without reading the comments. A voice ticket is never outbound: the
    call is the customer's contact, whoever the Talk comment names. None when the submitter is unknown.
    """
    if channel == VOICE_VIA:
        return False
    if opt_id(t.get("submitter_id")) in bot_ids:
        return True
    if not isinstance(submitter, dict):
        return None
    return submitter.get("role") in ("agent", "admin")


def handle_seconds(value: Any) -> float | None:
    """Seconds from a time-tracking field value (a number, or digits as text); None when nothing is recorded.

    The Zendesk Time Tracking app keeps the total seconds spent in an integer (or text) ticket field;
    0 or empty is read as no record (the field stays empty or 0 until an agent logs time), never as 0 s.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def call_seconds(comments: Iterable[Any]) -> float | None:
    """Talk handle time: the summed `call_duration` of a ticket's answered calls (its `VoiceComment`s).

    A call counts when an agent was on it (`data.answered_by_id`, given on inbound and outbound
    calls alike in Zendesk's Talk examples); a voicemail or a call nobody answered is no handling.
    None when the ticket has no answered call.
    """
    total: float | None = None
    for comment in comments:
        if not isinstance(comment, dict) or comment.get("type") != "VoiceComment":
            continue
        data = comment.get("data")
        if not isinstance(data, dict) or data.get("answered_by_id") is None:
            continue
        duration = data.get("call_duration")
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
            continue
        total = (total or 0.0) + float(duration)
    return total


def event_rows(event: Mapping[str, Any], privacy: Privacy = DEFAULT_PRIVACY,
               bot_ids: frozenset[str] = frozenset()) -> Iterator[tuple[str, Row]]:
    """The messages, resolution events and group/priority/assignee changes of one ticket event (an audit and
    its children; see `field_change_row` for the changes).

    A comment's author role is decided here where the comment itself tells it (a trigger, the
    AI agent, an author listed in `bot_ids`), else left to the author's user role. A Talk call
    (a `VoiceComment`) is the customer's contact, answered by the agent it names (see `_call_rows`).
    """
    contact_id = record_id(event["ticket_id"])
    at = iso_time(event.get("created_at") or event["timestamp"], "created_at")
    bodies = privacy.bodies or privacy.read_bodies  # else `privacy.body` is None whatever the text
    for child in event.get("child_events") or ():
        kind = child.get("event_type")
        if kind in ("Comment", "VoiceComment") and "public" not in child and "comment_present" in child:
            continue  # without include=comment_events: only the comment_present/comment_public flags
        if kind == "VoiceComment" or (kind == "Comment" and child.get("type") == "VoiceComment"):
            yield from _call_rows(child, contact_id, at, event.get("via"))
        elif kind == "Comment":
            # An event carries its own `via` only where it differs from its audit's (Zendesk's audit docs).
            author_id = opt_id(child.get("author_id"))
            role = _author_role(child["via"] if "via" in child else event.get("via"))
            if role is None and author_id in bot_ids:
                role = "bot"  # an integration bot posting through an agent seat (the admin's bot_agent_ids)
            yield "messages", {
                "source": SOURCE, "source_id": record_id(child["id"]), "contact_id": contact_id,
                "author_id": author_id, "author_role": role, "public": flag(child["public"], "public"),
                "created_at": iso_time(child.get("created_at") or at, "created_at"),
                "body": privacy.body(child.get("plain_body", child.get("body"))) if bodies else None,
            }
        elif kind in ("Create", "Change") and child.get("field_name", "status") == "status":
            # The export keys a change by the field's name (`status`); an audit's event gives `value`.
            new = child["status"] if "status" in child else child.get("value") if "field_name" in child else None
            transition = _transition(child.get("previous_value"), new) if new is not None else None
            if transition:
                yield "status_events", {"source": SOURCE, "source_id": record_id(child["id"]), "contact_id": contact_id,
                                        "kind": transition, "at": at}
        if kind in ("Create", "Change"):
            change = field_change_row(child, contact_id, at)
            if change is not None:
                yield "contact_changes", change


def field_change_row(child: Mapping[str, Any], contact_id: str, at: str) -> Row | None:
    """A `Create`/`Change` child event of the ticket's group, priority or assignee as a change; None for another field.

    Both documented forms are read: the export keys the event by the ticket field's name
    (`"group_id": 360002, "previous_value": 360001`), an audit's event names the field in
    `field_name` and the new value in `value`. A `Create` sets a new ticket's field (no previous
    value). Ids may come as numbers or text; a priority outside low/normal/high/urgent, like an
    emptied field, is None. A change to the same value is no change.
    """
    field_name = child.get("field_name")
    for key, name in CHANGE_FIELDS.items():
        if key in child:
            new = child[key]
        elif field_name == key and "value" in child:
            new = child["value"]
        else:
            continue
        value, previous = _change_value(name, new), _change_value(name, child.get("previous_value"))
        if value == previous:
            return None
        return {"source": SOURCE, "source_id": record_id(child["id"]), "contact_id": contact_id, "field": name,
                "value": value, "previous": previous, "at": at}
    return None


def _change_value(name: str, value: Any) -> str | None:
    if name == "priority":
        return value if value in PRIORITIES else None
    if isinstance(value, list):  # audits of some clients show a one-item list (zendesk2's TicketChange)
        value = value[0] if len(value) == 1 else None
    return opt_id(value, name)


def _call_rows(child: Mapping[str, Any], contact_id: str, at: str, audit_via: Any) -> Iterator[tuple[str, Row]]:
    """A Talk call as messages: the caller's contact, and the answer of the agent who took it.

    The voice comment is written by Talk (often as a private note, under an agent) but stands for a
    call the customer made or took: catalogue 2c reads a voice ticket as the customer's contact, so
    the call is a customer message at its start (`data.started_at`, else the comment's time). When
    an agent was on the line (`data.answered_by_id`) the call was answered then: Zendesk gives no
    answer time on the comment (`time_to_answer` is only in Talk's own call records), so the answer
    is dated at the call's start too. A voicemail (`via.source.rel` `voicemail`) or a call nobody
    answered stays a customer message waiting for its reply (a call back, an e-mail); an outbound
    call (`rel` `outbound`) nobody answered is no message at all. Field names are those of Talk's
    voice comment object (`started_at`, `answered_by_id`, `call_duration`); how the ticket-events
    export shows a voice comment (its `event_type`) is not documented, so both forms are read.
    """
    data: Mapping[str, Any] = child.get("data") or {}
    if not isinstance(data, dict):
        raise RecordError("data is not an object")
    via = child.get("via", audit_via)
    source = via.get("source") if isinstance(via, dict) else None
    rel = source.get("rel") if isinstance(source, dict) else None
    answered_by = opt_id(data.get("answered_by_id"))
    if rel == OUTBOUND_CALL_REL and answered_by is None:
        return  # an agent's call the customer did not take: no contact from them
    started = iso_time(data.get("started_at") or child.get("created_at") or at, "data.started_at")
    call_id = record_id(child["id"])
    yield "messages", {"source": SOURCE, "source_id": call_id, "contact_id": contact_id, "author_id": None,
                       "author_role": "customer", "public": True, "created_at": started, "body": None}
    if answered_by is not None and rel != VOICEMAIL_REL:
        yield "messages", {"source": SOURCE, "source_id": f"{call_id}:answer", "contact_id": contact_id,
                           "author_id": answered_by, "author_role": "agent", "public": True, "created_at": started,
                           "body": None}


def person_row(u: Mapping[str, Any], privacy: Privacy = DEFAULT_PRIVACY, bot_ids: frozenset[str] = frozenset()) -> Row:
    role = _role(u, bot_ids)
    locale = opt_str(u.get("locale"), "locale")
    fields = u.get("user_fields") or {}
    if not isinstance(fields, dict):
        raise RecordError("user_fields is not an object")
    return {
        "source": SOURCE, "source_id": record_id(u["id"]), "role": role, "locale": locale,
        "language": primary_language(locale), "country": _country(fields),
        "organization_id": opt_id(u.get("organization_id")),
        "time_zone": opt_str(u.get("iana_time_zone") or u.get("time_zone"), "time_zone"), "tags": _tags(u),
        "custom": fields, "raw": _compact(u, privacy.drop),
        # Agents' names by `store_agent_names`, customers' by `store_names` (docs/privacy.md).
        **(privacy.person if role == "customer" else privacy.staff)(u.get("name"), u.get("email"), u.get("phone")),
    }


def person_role_row(u: Mapping[str, Any], bot_ids: frozenset[str] = frozenset()) -> Row:
    """Just who a sideloaded user is: enough for the store to tell their comments' role.

    The users stream, read before the tickets, brings the full row; this covers a user
    created since, whose ticket's comments would otherwise wait a whole sync for a role.
    """
    return {"source": SOURCE, "source_id": record_id(u["id"]), "role": _role(u, bot_ids)}


def _role(u: Mapping[str, Any], bot_ids: frozenset[str]) -> str:
    """customer or agent by the user's role; `bot` for an agent seat the admin lists in `bot_agent_ids`."""
    role = ROLES.get(u.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise RecordError(f"unknown role {u.get('role')!r}")
    if role == "agent" and opt_id(u.get("id")) in bot_ids:
        return "bot"
    return role


def group_row(g: Mapping[str, Any]) -> Row:
    return {"source": SOURCE, "source_id": record_id(g["id"]), "name": opt_str(g.get("name"), "name"),
            "raw": scrub(g, PERSONAL_KEYS)}


def organization_row(o: Mapping[str, Any]) -> Row:
    fields = o.get("organization_fields") or {}
    if not isinstance(fields, dict):
        raise RecordError("organization_fields is not an object")
    return {"source": SOURCE, "source_id": record_id(o["id"]), "name": opt_str(o.get("name"), "name"),
            "country": _country(fields), "tags": _tags(o), "custom": fields, "raw": scrub(o, PERSONAL_KEYS)}


def legacy_rating_row(r: Mapping[str, Any], privacy: Privacy = DEFAULT_PRIVACY) -> Row | None:
    """A legacy rating (good 1 / bad 0), dated when answered; offers without answer are no response."""
    score = r.get("score")
    if score not in ("good", "bad"):
        return None
    value = 1.0 if score == "good" else 0.0
    return {
        "source": SOURCE, "source_id": record_id(r["id"]), "kind": "csat", "score": value, "scale": "good_bad",
        "is_positive": is_positive_response("csat", value, "good_bad"),
        "created_at": iso_time(r["updated_at"], "updated_at"),
        "contact_id": opt_id(r.get("ticket_id")), "requester_id": opt_id(r.get("requester_id")),
        "agent_id": opt_id(r.get("assignee_id")), "question": "satisfaction_rating",
        "comment": privacy.comment(r.get("comment")), "raw": privacy.raw(r),
    }


def survey_response_row(resp: Mapping[str, Any], privacy: Privacy = DEFAULT_PRIVACY) -> Row | None:
    """A new-CSAT response: its customer-satisfaction rating, dated when that answer was given.

    The documented response has no time of its own: it is created when the survey is offered
    and its answers (`answers[].created_at`) arrive later. Until the customer-satisfaction
    question is answered (`rating_scale`, `question.sub_type == "customer_satisfaction"`)
    there is no response to store. The scale comes from the question's options; without
    them, Zendesk's own `rating_category` says whether the answer is positive.
    """
    answers = resp.get("answers") or []
    if not isinstance(answers, list):
        raise RecordError("answers is not a list")
    answer = _csat_answer(answers)
    if answer is None or answer.get("rating") is None:
        return None
    rating = answer["rating"]
    if isinstance(rating, bool) or not isinstance(rating, (int, float)):
        raise RecordError("answers.rating is not a number")
    score = float(rating)
    created_at = iso_time(answer.get("created_at") or answer.get("updated_at"), "answers.created_at")
    scale = _question_scale(answer.get("question") or {})
    positive = (_category_positive(answer.get("rating_category")) if scale is None
                else scale.is_positive(score))  # None (counted nowhere) for a rating outside the options
    remarks = [_text(a.get("value")) for a in answers if isinstance(a, dict) and a.get("type") == "open_ended"]
    kept = {k: v for k, v in resp.items() if k != "answers"}
    # Open-ended answers are the customer's own words: kept only with store_survey_comments.
    kept["answers"] = answers if privacy.comments else [answer]
    return {
        "source": SOURCE, "source_id": record_id(resp["id"]), "kind": "csat", "score": score,
        "scale": CATEGORY_SCALE if scale is None else scale.name, "is_positive": positive,
        "created_at": created_at, "contact_id": survey_ticket_id(resp),
        "requester_id": opt_id(resp.get("responder_id")), "question": "customer_satisfaction",
        "comment": privacy.comment(next((r for r in remarks if r), None)),
        "raw": privacy.raw(kept),
    }


def survey_ticket_id(resp: Mapping[str, Any]) -> str | None:
    """The ticket a response is about: `subjects[]` of type ticket, else a `...:ticket:<id>` zrn."""
    for subject in resp.get("subjects") or ():
        if isinstance(subject, dict) and subject.get("type") == "ticket":
            return opt_id(subject.get("id"))
    for zrn in resp.get("subject_zrns") or ():
        if isinstance(zrn, str) and ":ticket:" in zrn:
            return opt_id(zrn.rsplit(":", 1)[1])
    return None


def survey_response_times(resp: Mapping[str, Any]) -> list[str]:
    """Every time a response shows: its answers' times (the response itself carries none)."""
    times = []
    for a in resp.get("answers") or ():
        if isinstance(a, dict):
            for key in ("created_at", "updated_at"):
                value = a.get(key)
                if isinstance(value, str):
                    times.append(value)
    return times


def via_channel(via: Any) -> str | None:
    """The via type of a `via` in any form: an object, a display name ("Rule", "Web form") or a via id."""
    channel = via.get("channel") if isinstance(via, dict) else via
    if type(channel) is str:
        known = _VIA_TYPES.get(channel)
        if known is not None:
            return known  # the hot path: an account uses a handful of channel names
    if isinstance(channel, bool):
        return None
    if isinstance(channel, int):
        return VIA_IDS.get(channel, str(channel))
    if isinstance(channel, str):
        if channel.isdigit():
            found = VIA_IDS.get(int(channel), channel)
        else:
            lowered = channel.strip().lower()
            found = VIA_NAMES.get(lowered, lowered.replace(" ", "_"))
        if len(_VIA_TYPES) < _VIA_TYPES_KEPT:
            _VIA_TYPES[channel] = found
        return found
    return None


# The via type of each channel text met (every comment and ticket names one), up to a bound.
_VIA_TYPES: dict[str, str] = {}
_VIA_TYPES_KEPT = 1000


# --- small helpers ----------------------------------------------------------------------


def _tags(record: Mapping[str, Any]) -> list[str]:
    tags = record.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RecordError("tags is not a list of strings")
    return tags


def _custom_fields(fields: Any) -> dict[str, Any]:
    if fields is None:
        return {}
    if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
        raise RecordError("custom_fields is not a list of {id, value}")
    return {record_id(f["id"]): f.get("value") for f in fields}


def _channel(channel: str | None) -> str:
    return CHANNELS.get(channel or "", Channel.OTHER).value


def _author_role(via: Any) -> str | None:
    """`system` for triggers, automations and merges, `bot` for the AI agent, else None (people decide).

    `via` may be an object, a display name or a via id (errata); an object's `source.rel`
    (`trigger`, `automation`, `merge`) marks a business rule or a merge whatever its channel.
    """
    channel = via_channel(via)
    source = via.get("source") if isinstance(via, dict) else None
    rel = source.get("rel") if isinstance(source, dict) else None
    if channel in SYSTEM_VIA or rel in SYSTEM_RELS:
        return "system"
    if channel is not None and channel.startswith(BOT_VIA_PREFIXES):
        return "bot"
    return None


def _transition(previous: Any, status: Any) -> str | None:
    if status in RESOLVED and previous not in RESOLVED:
        return "resolved"
    if previous in RESOLVED and status not in RESOLVED and status != "deleted":
        return "reopened"
    return None


def _country(fields: Any) -> str | None:
    value = fields.get(COUNTRY_FIELD) if isinstance(fields, dict) else None
    if isinstance(value, str) and len(value) == 2 and value.isalpha():
        return value.upper()
    return None


def _csat_answer(answers: list[Any]) -> dict[str, Any] | None:
    """The rating answer of the customer-satisfaction question (`question.sub_type`), else of an untyped one.

    A survey may hold other rating-scale questions (`sub_type` `other`): they are not CSAT. An answer
    whose question gives no `sub_type` at all is taken only when no answer names the CSAT question.
    """
    ratings = [a for a in answers if isinstance(a, dict) and a.get("type") == "rating_scale"]
    for wanted in (CSAT_SUB_TYPE, None):
        for a in ratings:
            question = a.get("question")
            if (question.get("sub_type") if isinstance(question, dict) else None) == wanted:
                return a
    return None


def _question_scale(question: Mapping[str, Any]) -> Scale | None:
    """The scale `low-high` of the question's options (`rating`, or `value`); None without (two) options.

    A range the catalogue names (1-3, 1-5, 1-7, 1-10, 0-10) keeps its own positive answers; any other
    (1-4, 0-5, ...) is positive in its top 20 % (catalogue 2b, 2c): the row stores that positivity,
    which the engine trusts for a scale it does not know.
    """
    values = []
    for option in question.get("options") or ():
        if isinstance(option, dict):
            value = option.get("rating", option.get("value"))
            if isinstance(value, int) and not isinstance(value, bool):
                values.append(value)
    if len(set(values)) < 2:
        return None  # no range to read a rating on
    low, high = min(values), max(values)
    name = f"{low}-{high}"
    return SCALES.get(name) or points_scale(name, low, high)


def _category_positive(category: Any) -> bool | None:
    return {"good": True, "neutral": False, "bad": False}.get(category) if isinstance(category, str) else None


def _text(value: Any) -> str | None:
    """A text answer: plain text, or a text content object (`{"type": "static", "value": ...}`)."""
    if isinstance(value, dict):
        value = value.get("value")
    return value if isinstance(value, str) and value else None


def _vendor(metric: Any) -> dict[str, Any]:
    """The ticket's own metric set figures (minutes; `_bh` = business hours), for comparison."""
    if not isinstance(metric, dict):
        return {}
    out: dict[str, Any] = {"reopens": metric.get("reopens"), "replies": metric.get("replies"),
                           "solved_at": metric.get("solved_at")}
    for key, name, business in _METRIC_NAMES:
        value = metric.get(key)
        if isinstance(value, dict):
            out[name], out[business] = value.get("calendar"), value.get("business")
    return out


# Each metric's key in the metric set and its two names in `vendor` (calendar, business hours).
_METRIC_NAMES = tuple((key, f"{name}_minutes", f"{name}_minutes_bh")
                      for key, name in ((key, key.removesuffix("_in_minutes")) for key in METRICS))


def _vendor_facts(created_at: str, metric: Any, outbound: bool = False) -> Row:
    """Reply and resolution facts from the metric_set, for tickets whose events are not read.

    Replies follow a customer message (catalogue 2c): an outbound ticket whose requester never
    updated it (`requester_updated_at` empty) has no customer message, so neither replies nor a
    first reply, whatever Zendesk counted; when the requester did write, the metric set does not
    say when first, so the vendor's reply figures are kept as they are.
    """
    if not isinstance(metric, dict):
        return {}
    created = epoch_of(created_at)

    def after(key: str) -> str | None:
        minutes = (metric.get(key) or {}).get("calendar")
        return iso_utc(created + 60 * minutes) if isinstance(minutes, int) else None

    facts: Row = {"first_agent_reply_at": after("reply_time_in_minutes"),
                  "first_resolved_at": after("first_resolution_time_in_minutes"),
                  "last_resolved_at": after("full_resolution_time_in_minutes"),
                  "reopens": metric.get("reopens"), "agent_replies": metric.get("replies")}
    if outbound and not metric.get("requester_updated_at"):
        facts.update(first_agent_reply_at=None, agent_replies=0, customer_messages=0)
    return facts


def _compact(payload: Mapping[str, Any], drop: frozenset[str]) -> dict[str, Any]:
    """`scrub(payload, drop)` without its empty top-level fields (a third of a ticket's bytes; absent reads as empty).

    One pass instead of scrubbing, then filtering a copy: this runs on every ticket and user.
    """
    kept: dict[str, Any] = {}
    for key, value in payload.items():
        if value is None or key in drop:
            continue
        kind = type(value)
        if kind is dict or kind is list:
            if not value or not (value := scrub(value, drop)):
                continue
        elif value == "":
            continue
        kept[key] = value
    return kept
