"""The fake Zendesk speaks the documented shapes and pagination rules (reference §1)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from connectors.sandbox import Sandbox
from connectors.zendesk.fake import FakeZendesk, decode_cursor
from connectors.zendesk.normalize import CHANNELS, via_channel

pytestmark = pytest.mark.sandbox(seed=5, tickets=300, names=("zendesk",))  # conftest's module_sandbox


@pytest.fixture
def fake(module_sandbox: Sandbox) -> FakeZendesk:
    zendesk = module_sandbox["zendesk"]
    assert isinstance(zendesk, FakeZendesk)
    zendesk.faults.clear()
    zendesk.clear_log()
    return zendesk


def get(fake: FakeZendesk, path: str, auth: tuple[str, str] | None = None, **params: Any) -> requests.Response:
    auth = auth or (f"{fake.email}/token", fake.api_token)
    return requests.get(f"{fake.base_url}/api/v2/{path}", params=params, auth=auth, timeout=10)


def test_ticket_export_pages_in_generated_timestamp_order_to_a_reusable_last_cursor(fake: FakeZendesk) -> None:
    seen: list[tuple[int, int]] = []
    params: dict[str, Any] = {"start_time": 0, "per_page": 40, "support_type_scope": "all"}
    while True:
        body = get(fake, "incremental/tickets/cursor.json", **params).json()
        seen += [(t["generated_timestamp"], t["id"]) for t in body["tickets"]]
        assert body["before_cursor"] is None and body["after_url"].startswith(fake.base_url)
        if body["end_of_stream"]:
            break
        params = {"cursor": body["after_cursor"], "per_page": 40, "support_type_scope": "all"}
    assert seen == sorted(seen) and len(seen) == len(fake.data.tickets)
    assert decode_cursor(body["after_cursor"]) == seen[-1]
    changed = set(fake.world.mutate("zendesk", 3))
    again = get(fake, "incremental/tickets/cursor", cursor=body["after_cursor"], support_type_scope="all").json()
    assert {t["id"] for t in again["tickets"]} == changed and again["end_of_stream"] is True


def test_default_scope_hides_ai_agent_tickets_and_sideloads_their_people(fake: FakeZendesk) -> None:
    body = get(fake, "incremental/tickets/cursor", start_time=0,
               include="metric_sets,users,groups,organizations").json()
    everything = get(fake, "incremental/tickets/cursor", start_time=0, support_type_scope="all").json()
    assert len(body["tickets"]) < len(everything["tickets"])
    live = [t for t in body["tickets"] if t["status"] != "deleted"]
    wanted = {t[k] for t in live for k in ("requester_id", "submitter_id", "assignee_id") if t[k] is not None}
    assert {u["id"] for u in body["users"]} == wanted
    assert {g["id"] for g in body["groups"]} == {t["group_id"] for t in live}
    assert all("metric_set" in t for t in live)
    deleted = [t for t in everything["tickets"] if t["status"] == "deleted"]
    assert deleted and all("requester_id" not in t for t in deleted)
    kept = get(fake, "incremental/tickets/cursor", start_time=0, support_type_scope="all",
               exclude_deleted="true").json()
    assert len(kept["tickets"]) == len(everything["tickets"]) - len(deleted)


def test_time_based_pages_never_split_a_second(fake: FakeZendesk) -> None:
    orgs = get(fake, "incremental/organizations.json", start_time=0, per_page=2).json()
    assert orgs["count"] == len(fake.data.organizations) > 2 and orgs["end_of_stream"] is True
    events = get(fake, "incremental/ticket_events", start_time=0, per_page=25).json()
    stamps = [e["timestamp"] for e in events["ticket_events"]]
    assert events["end_time"] == stamps[-1] and stamps == sorted(stamps)
    following = get(fake, "incremental/ticket_events", start_time=events["end_time"], per_page=25).json()
    assert following["ticket_events"][0]["timestamp"] == events["end_time"]  # the boundary second again
    repeated = {e["id"] for e in following["ticket_events"]} & {e["id"] for e in events["ticket_events"]}
    assert repeated == {e["id"] for e in events["ticket_events"] if e["timestamp"] == events["end_time"]}


def test_ticket_events_carry_comments_only_when_asked(fake: FakeZendesk) -> None:
    """Without include=comment_events a comment is one `Comment` child event with the documented flags."""
    bare = get(fake, "incremental/ticket_events", start_time=0, per_page=50).json()["ticket_events"]
    full = get(fake, "incremental/ticket_events", start_time=0, per_page=50,
               include="comment_events").json()["ticket_events"]
    flags = [c for e in bare for c in e["child_events"] if c["event_type"] == "Comment"]
    assert flags and all(c["comment_present"] is True and isinstance(c["comment_public"], bool) for c in flags)
    assert all("body" not in c and "comment_present" not in e for e in bare for c in e["child_events"])
    comments = [(e, c) for e in full for c in e["child_events"] if c["event_type"] == "Comment"]
    assert comments and all({"author_id", "body", "public"} <= c.keys() for _, c in comments)
    assert all(c["audit_id"] == e["id"] and "comment_present" not in c for e, c in comments)


def test_ticket_event_via_is_a_display_name_and_children_carry_theirs(fake: FakeZendesk) -> None:
    """Documented payload: an audit's and its update events' `via` is a display name ("Web form", "Rule"); every
    child event carries `via` and `via_reference_id`; a comment (include=comment_events) has its `via` object."""
    events = get(fake, "incremental/ticket_events", start_time=0, include="comment_events",
                 support_type_scope="all").json()["ticket_events"]
    shown = {e["via"] for e in events}
    assert {"Web form", "Rule"} <= shown and all(isinstance(v, str) for v in shown)
    assert all(via_channel(v) in CHANNELS or via_channel(v) in {"rule", "answer_bot", "sample_ticket", "any_channel"}
               for v in shown)
    for e in events:
        for child in e["child_events"]:
            assert "via" in child and "via_reference_id" in child
            if child["event_type"] == "Comment":
                assert isinstance(child["via"], dict) and child["via"]["channel"]
            else:
                assert child["via"] == e["via"]


def test_ticket_events_follow_the_support_type_scope(fake: FakeZendesk) -> None:
    """`support_type_scope` defaults to `agent`: AI-agent tickets' events only with `ai_agent` or `all`."""
    def tickets(**scope: str) -> set[int]:
        body = get(fake, "incremental/ticket_events", start_time=0, **scope).json()
        return {e["ticket_id"] for e in body["ticket_events"]}

    default, everything, ai = tickets(), tickets(support_type_scope="all"), tickets(support_type_scope="ai_agent")
    assert ai and default == tickets(support_type_scope="agent") and not default & ai
    assert default | ai == everything
    assert get(fake, "incremental/ticket_events", start_time=0, support_type_scope="bots").status_code == 400


def test_metric_sets_come_on_each_ticket_or_top_level(fake: FakeZendesk) -> None:
    per_ticket = get(fake, "incremental/tickets/cursor", start_time=0, include="metric_sets").json()
    assert "metric_sets" not in per_ticket and all("metric_set" in t for t in per_ticket["tickets"]
                                                   if t["status"] != "deleted")
    fake.metric_sets_form = "top_level"
    try:
        top = get(fake, "incremental/tickets/cursor", start_time=0, include="metric_sets").json()
    finally:
        fake.metric_sets_form = "per_ticket"
    assert all("metric_set" not in t for t in top["tickets"])
    assert {m["ticket_id"] for m in top["metric_sets"]} == {t["id"] for t in top["tickets"] if t["status"] != "deleted"}


def test_limits_and_bad_parameters_are_refused(fake: FakeZendesk) -> None:
    assert get(fake, "incremental/tickets/cursor", start_time=0, per_page=1001).status_code == 400
    assert get(fake, "groups", **{"page[size]": 101}).status_code == 400
    too_recent = get(fake, "incremental/ticket_events", start_time=fake.world.clock() + 60)
    assert too_recent.status_code == 400 and set(too_recent.json()) == {"error", "description"}
    assert get(fake, "incremental/tickets/cursor", cursor="not-a-cursor").status_code == 400


def test_auth_errors_and_throttling_look_like_zendesk(fake: FakeZendesk) -> None:
    denied = get(fake, "groups", auth=("admin@sandbox.example/token", "wrong"))
    assert denied.status_code == 401 and denied.json() == {"error": "Couldn't authenticate you"}
    fake.fail(429, headers={"Retry-After": "3"})
    throttled = get(fake, "groups")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert throttled.headers["Content-Type"].startswith("text/plain")
    assert throttled.text == "Number of allowed API requests per minute exceeded"
    for response in (denied, throttled, get(fake, "groups")):
        assert {"X-Rate-Limit", "X-Rate-Limit-Remaining", "ratelimit-limit", "ratelimit-remaining",
                "ratelimit-reset"} <= response.headers.keys()


def test_csat_flavours_and_the_documented_new_csat_response(fake: FakeZendesk) -> None:
    assert get(fake, "satisfaction_ratings").status_code == 200
    assert get(fake, "guide/survey_responses").status_code == 403
    fake.csat_mode = "survey_responses"
    try:
        assert get(fake, "satisfaction_ratings").status_code == 403
        body = get(fake, "guide/survey_responses", **{"page[size]": 5}).json()
        everything = get(fake, "guide/survey_responses", **{"page[size]": 100}).json()["survey_responses"]
        fake.csat_mode = "both"
        legacy = get(fake, "satisfaction_ratings", **{"page[size]": 100}).json()["satisfaction_ratings"]
        new = get(fake, "guide/survey_responses", **{"page[size]": 100}).json()["survey_responses"]
    finally:
        fake.csat_mode = "legacy"
    ids = [r["id"] for r in body["survey_responses"]]
    assert ids == sorted(ids) and body["meta"]["has_more"] and body["meta"]["after_cursor"] == ids[-1]
    for r in everything:  # the documented object: no time of its own, times on the answers
        assert not {"created_at", "updated_at"} & r.keys()
        assert {"id", "responder_id", "subject_zrns", "subjects", "survey", "expires_at", "answers"} <= r.keys()
        assert all({"type", "question", "created_at", "updated_at"} <= a.keys() for a in r["answers"])
    offered = [r for r in everything if not r["answers"]]
    rated = [a for r in everything for a in r["answers"] if a["type"] == "rating_scale"]
    assert offered and rated  # created at the offer; the answer comes later
    assert all(a["question"]["sub_type"] == "customer_satisfaction" and a["rating"] in range(1, 6)
               and [o["rating"] for o in a["question"]["options"]] == [1, 2, 3, 4, 5] for a in rated)
    # An account that moved keeps both histories, split at the move.
    assert legacy and new and max(r["created_at"] for r in legacy) <= min(r["expires_at"] for r in new)
    assert len(legacy) + len(new) == len(get(fake, "satisfaction_ratings", **{"page[size]": 100}).json()[
        "satisfaction_ratings"])


def test_legacy_ratings_filter_by_offer_time_and_tell_the_answer_time(fake: FakeZendesk) -> None:
    ratings = get(fake, "satisfaction_ratings", **{"page[size]": 100}).json()["satisfaction_ratings"]
    offered = [r["created_at"] for r in ratings]
    assert offered == sorted(offered)
    answered = [r for r in ratings if r["score"] in ("good", "bad")]
    assert answered and all(r["updated_at"] >= r["created_at"] for r in answered)
    assert any(r["updated_at"] > r["created_at"] for r in answered)
    assert any(r["score"] == "offered" for r in ratings)
