"""The fake Zendesk speaks the documented shapes and pagination rules (reference §1)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from connectors.sandbox import Sandbox
from connectors.zendesk.fake import FakeZendesk, decode_cursor

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
    bare = get(fake, "incremental/ticket_events", start_time=0, per_page=50).json()["ticket_events"]
    full = get(fake, "incremental/ticket_events", start_time=0, per_page=50,
               include="comment_events").json()["ticket_events"]
    assert all(c["event_type"] != "Comment" for e in bare for c in e["child_events"])
    assert any(e["comment_present"] for e in bare)
    comments = [c for e in full for c in e["child_events"] if c["event_type"] == "Comment"]
    assert comments and all({"author_id", "body", "public", "via"} <= c.keys() for c in comments)
    assert {c["via"]["channel"] for c in comments} >= {"web"}


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


def test_an_account_has_one_csat_flavour(fake: FakeZendesk) -> None:
    assert get(fake, "satisfaction_ratings").status_code == 200
    assert get(fake, "guide/survey_responses").status_code == 403
    fake.csat_mode = "survey_responses"
    try:
        assert get(fake, "satisfaction_ratings").status_code == 403
        body = get(fake, "guide/survey_responses", **{"page[size]": 5}).json()
    finally:
        fake.csat_mode = "legacy"
    ids = [r["id"] for r in body["survey_responses"]]
    assert ids == sorted(ids) and body["meta"]["has_more"] and body["meta"]["after_cursor"] == ids[-1]
    assert all(r["answers"][0]["question"]["sub_type"] == "customer_satisfaction" for r in body["survey_responses"])


def test_legacy_ratings_filter_by_offer_time_and_tell_the_answer_time(fake: FakeZendesk) -> None:
    ratings = get(fake, "satisfaction_ratings", **{"page[size]": 100}).json()["satisfaction_ratings"]
    offered = [r["created_at"] for r in ratings]
    assert offered == sorted(offered)
    answered = [r for r in ratings if r["score"] in ("good", "bad")]
    assert answered and all(r["updated_at"] >= r["created_at"] for r in answered)
    assert any(r["updated_at"] > r["created_at"] for r in answered)
    assert any(r["score"] == "offered" for r in ratings)
