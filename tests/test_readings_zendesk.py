"""Catalogue 2c on Zendesk: hand-built accounts, synced for real, KPIs checked against values worked out by hand.

Each test builds a small Zendesk account as the API documents it (tickets with `via`, `submitter_id`
and tags; ticket events with comment and status child events, `via` as an object or a display name;
Talk voice comments; legacy ratings and new-CSAT survey responses), serves it over loopback from a
stub that answers each endpoint with one page, runs the real sync (`kpi_core.sync.sync_source`:
the connector's paging and normalization, the store's page writer, `derive.settle`) into a real
store, and reads the KPIs through `kpi_core.kpis.api`. Expected values are computed in the comments,
never by the engine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from kpi_fixtures import row, sync_cleanly, ts, value
from pydantic import SecretStr

from connectors.zendesk.connector import ZendeskConnector
from connectors.zendesk.settings import ZendeskSettings
from kpi_core.store import Store

AGENT, AGENT_2, BOT_SEAT = 700, 701, 750  # BOT_SEAT: an integration bot posting through an agent seat
TIME_FIELD = 360000123  # the Time Tracking app's "Total time spent (sec)" ticket field


def near(expected: float) -> Any:
    """The engine rounds values to 4 decimals."""
    return pytest.approx(expected, abs=1e-3)


def epoch(stamp: str) -> int:
    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def via(channel: str | int, rel: str | None = None) -> dict[str, Any]:
    return {"channel": channel, "source": {"from": {}, "to": {}, "rel": rel}}


# --- a hand-built account ---------------------------------------------------------------------------


@dataclass
class Account:
    """What the stub serves: users, tickets, their audits (ticket events), CSAT and ticket comments."""

    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    tickets: list[dict[str, Any]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    ratings: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _next: int = 90_000

    def __post_init__(self) -> None:
        for uid in (AGENT, AGENT_2, BOT_SEAT):
            self.user(uid, "agent", "en-US")

    def next_id(self) -> int:
        self._next += 1
        return self._next

    def user(self, uid: int, role: str = "end-user", locale: str | None = "en-US") -> None:
        self.users[uid] = {
            "id": uid, "url": f"https://acme.zendesk.com/api/v2/users/{uid}.json", "name": f"User {uid}",
            "email": f"user{uid}@example.org", "role": role, "locale": locale, "time_zone": "UTC",
            "organization_id": None, "tags": [], "user_fields": {}, "active": True, "suspended": False,
            "created_at": "2026-01-05T08:00:00Z", "updated_at": "2026-01-05T08:00:00Z"}

    def ticket(self, tid: int, created: str, requester: int, *, status: str, channel: str | int = "email",
               rel: str | None = None, submitter: int | None = None, tags: tuple[str, ...] = (),
               custom_fields: tuple[tuple[int, Any], ...] = (), locale: str | None = "en-US") -> None:
        """A ticket as the incremental export gives it, and the audit that created it (status `new`)."""
        if requester not in self.users:
            self.user(requester, locale=locale)
        self.tickets.append({
            "id": tid, "url": f"https://acme.zendesk.com/api/v2/tickets/{tid}.json", "external_id": None,
            "subject": f"Ticket {tid}", "description": "first comment", "type": "question", "priority": "normal",
            "status": status, "requester_id": requester, "submitter_id": submitter or requester,
            "assignee_id": AGENT, "organization_id": None, "group_id": 12, "brand_id": 1, "tags": list(tags),
            "custom_fields": [{"id": fid, "value": v} for fid, v in custom_fields], "via": via(channel, rel),
            "satisfaction_rating": None, "created_at": created, "updated_at": created,
            "generated_timestamp": epoch(created)})
        self.status(tid, created, "new", None)

    def audit(self, tid: int, at: str, children: list[dict[str, Any]], shown: str = "Web form",
              updater: int = AGENT) -> None:
        audit_id = self.next_id()
        for child in children:
            if child.get("event_type") in ("Comment", "VoiceComment"):
                child["audit_id"] = audit_id
        self.audits.append({"id": audit_id, "ticket_id": tid, "timestamp": epoch(at), "created_at": at,
                            "updater_id": updater, "via": shown, "event_type": "Audit", "system": {},
                            "child_events": children})

    def say(self, tid: int, at: str, author: int, *, public: bool = True, channel: str = "web",
            rel: str | None = None, own_via: bool = True, shown: str = "Web form") -> None:
        """A comment child event as `include=comment_events` gives it (its `via` an object)."""
        child: dict[str, Any] = {
            "id": self.next_id(), "via_reference_id": None, "type": "Comment", "author_id": author,
            "body": "text", "html_body": "<p>text</p>", "public": public, "attachments": [], "created_at": at,
            "event_type": "Comment"}
        if own_via:  # an event carries `via` only where it differs from its audit's
            child["via"] = via(channel, rel)
        self.audit(tid, at, [child], shown, updater=author)

    def status(self, tid: int, at: str, new: str, previous: str | None, *, audit_form: bool = False) -> None:
        """A status change as the export keys it (`status`), or as an audit's Change event (`field_name`, `value`)."""
        child: dict[str, Any] = {"id": self.next_id(), "via": "Web form", "via_reference_id": None,
                                 "event_type": "Create" if previous is None else "Change"}
        if audit_form:
            child.update(field_name="status", value=new, previous_value=previous)
        else:
            child["status"] = new
            if previous is not None:
                child["previous_value"] = previous
        self.audit(tid, at, [child])

    def call(self, tid: int, started: str, ended: str, duration: int, *, answered_by: int | None,
             rel: str = "inbound") -> dict[str, Any]:
        """A Talk voice comment (private, written by Talk under the agent) in the events and the comments."""
        comment = {"id": self.next_id(), "type": "VoiceComment", "author_id": answered_by or AGENT, "public": False,
                   "body": "Call from: +1 555 0100", "html_body": "<p>Call</p>", "attachments": [],
                   "data": {"from": "+15550100", "to": "+15550199", "recording_url": None, "call_id": self.next_id(),
                            "call_duration": duration, "answered_by_id": answered_by, "started_at": started,
                            "location": "Dublin, Ireland"},
                   "via": via("voice", rel), "created_at": ended}
        self.audit(tid, ended, [{**comment, "event_type": "VoiceComment", "via_reference_id": None}],
                   shown="Phone call (inbound)")
        self.comments.setdefault(tid, []).append(comment)
        return comment

    def legacy_rating(self, tid: int, score: str, offered: str, answered: str, requester: int) -> None:
        self.ratings.append({
            "url": f"https://acme.zendesk.com/api/v2/satisfaction_ratings/{self.next_id()}.json", "id": self.next_id(),
            "assignee_id": AGENT, "group_id": 12, "requester_id": requester, "ticket_id": tid, "score": score,
            "comment": None, "reason": "No reason provided", "reason_id": None, "reason_code": 0,
            "created_at": offered, "updated_at": answered})

    def survey_response(self, tid: int, requester: int, answers: list[dict[str, Any]]) -> None:
        """A new-CSAT response: no time of its own, answers carry theirs (reference 1.2, errata)."""
        rid = f"01J{self.next_id():023d}"
        self.responses.append({
            "id": rid, "responder_id": requester, "subject_zrns": [f"zen:ticket:{tid}"],
            "subjects": [{"id": str(tid), "type": "ticket", "zrn": f"zen:ticket:{tid}"}],
            "survey": {"id": "01J58KJ9RAE0D2EK7HRVM7Z8F2", "state": "enabled", "version": 3},
            "expires_at": "2026-04-30T00:00:00Z", "answers": answers})

    # --- the pages the stub serves ---------------------------------------------------------------

    def pages(self) -> dict[str, Any]:
        users = list(self.users.values())
        end = max((a["timestamp"] for a in self.audits), default=epoch("2026-03-01T00:00:00Z"))
        listed = {"meta": {"has_more": False, "after_cursor": None, "before_cursor": None},
                  "links": {"prev": None, "next": None}}
        out: dict[str, Any] = {
            "/api/v2/incremental/users/cursor": {"users": users, "after_cursor": "dXNlcnM=", "after_url": None,
                                                 "before_cursor": None, "before_url": None, "end_of_stream": True},
            "/api/v2/groups": {"groups": [{"id": 12, "name": "Tier 1"}], **listed},
            "/api/v2/incremental/organizations": {"organizations": [], "count": 0, "end_time": end,
                                                  "end_of_stream": True, "next_page": None},
            "/api/v2/incremental/tickets/cursor": {"tickets": self.tickets, "users": users,
                                                   "after_cursor": "dGlja2V0cw==", "after_url": None,
                                                   "before_cursor": None, "before_url": None,
                                                   "end_of_stream": True},
            "/api/v2/incremental/ticket_events": {"ticket_events": self.audits, "count": len(self.audits),
                                                  "end_time": end, "end_of_stream": True, "next_page": None},
            "/api/v2/satisfaction_ratings": {"satisfaction_ratings": self.ratings, **listed},
            "/api/v2/guide/survey_responses": {"survey_responses": self.responses, **listed},
        }
        for tid in {t["id"] for t in self.tickets}:
            out[f"/api/v2/tickets/{tid}/comments"] = {"comments": self.comments.get(tid, []), **listed}
        return out


class _Handler(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.removesuffix(".json")
        body = self.pages.get(path)
        status = 200 if body is not None else 404
        data = json.dumps(body if body is not None else {"error": "RecordNotFound", "description": "Not found"})
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data.encode())))
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Any]:
    """`serve(account)`: a loopback server answering the account's pages; its base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(account: Account) -> str:
        handler = type("Handler", (_Handler,), {"pages": account.pages()})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def synced(store: Store, serve: Any, account: Account, **options: Any) -> Store:
    settings = ZendeskSettings(base_url=serve(account), email="admin@acme.example", api_token=SecretStr("token"),
                               start_date=date(2026, 1, 1), bot_agent_ids=[str(BOT_SEAT)], **options)
    return sync_cleanly(store, ZendeskConnector(settings))


# --- replies follow a customer message; outbound nobody answered --------------------------------------


def test_one_touch_fcr_touches_and_language_coverage_leave_out_the_unanswered_outbound(
        store: Store, serve: Any) -> None:
    a = Account()
    # T1 (de): customer, one agent reply, solved.
    a.ticket(1, ts(2, 9), 9001, status="solved", locale="de-DE")
    a.say(1, ts(2, 9), 9001, channel="email")
    a.say(1, ts(2, 10), AGENT)
    a.status(1, ts(2, 11), "solved", "open")
    # T2 (fr): two agent replies.
    a.ticket(2, ts(3, 9), 9002, status="solved", locale="fr-FR")
    a.say(2, ts(3, 9), 9002, channel="email")
    a.say(2, ts(3, 9, 30), AGENT)
    a.say(2, ts(3, 10), 9002, channel="email")
    a.say(2, ts(3, 10, 30), AGENT)
    a.status(2, ts(3, 11), "solved", "open")
    # T3 (es): a private note, then one public reply; its requester writes again two days later (T4).
    a.ticket(3, ts(4, 9), 9003, status="solved", locale="es-ES")
    a.say(3, ts(4, 9), 9003, channel="email")
    a.say(3, ts(4, 9, 10), AGENT, public=False)
    a.say(3, ts(4, 9, 20), AGENT)
    a.status(3, ts(4, 10), "solved", "open")
    a.ticket(4, ts(6, 9), 9003, status="solved")
    a.say(4, ts(6, 9), 9003, channel="email")
    a.say(4, ts(6, 9, 15), AGENT)
    a.status(4, ts(6, 9, 30), "solved", "open")
    # T5: an agent's outbound e-mail to T1's requester inside T1's FCR window, never answered, solved.
    a.ticket(5, ts(5, 9), 9001, status="solved", submitter=AGENT)
    a.say(5, ts(5, 9), AGENT)
    a.status(5, ts(5, 12), "solved", "pending")
    # T6 (ja): an outbound e-mail nobody answered, still pending.
    a.ticket(6, ts(7, 9), 9005, status="pending", submitter=AGENT, locale="ja-JP")
    a.say(6, ts(7, 9), AGENT)
    # T7 (pt): outbound, the customer answers, one agent reply (the opening e-mail is no reply).
    a.ticket(7, ts(8, 9), 9006, status="solved", submitter=AGENT, locale="pt-BR")
    a.say(7, ts(8, 9), AGENT)
    a.say(7, ts(8, 10), 9006, channel="email")
    a.say(7, ts(8, 10, 30), AGENT)
    a.status(7, ts(8, 11), "solved", "open")
    synced(store, serve, a)

    outbound = dict(store.db.execute("SELECT source_id, is_outbound FROM contacts").fetchall())
    assert outbound == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1, "6": 1, "7": 1}  # by the submitter's role
    # Resolved with >= 1 reply: T1 (1), T2 (2), T3 (1), T4 (1), T7 (1); T5 (outbound, unanswered) counts nowhere.
    # One-touch: T1, T3, T4, T7 = 4 of 5 = 80 %.
    assert value(store, "one_touch_resolution_pct") == near(80.0)
    # FCR: T2 (2 replies) fails; T3 fails (T4 from the same requester 2 days after); T1 holds (T5 is an
    # unanswered outbound contact, never the "new contact" that breaks FCR): T1, T4, T7 = 3 of 5 = 60 %.
    assert value(store, "fcr_pct") == near(60.0)
    # Touches: (1 + 2 + 1 + 1 + 1) / 5 resolved contacts = 1.2 (T5's opening e-mail is no touch).
    assert value(store, "agent_touches_avg") == near(1.2)
    # Languages of contacts whose customer got a reply: de, fr, es, pt = 4 (not ja: T6 only got the opener).
    assert value(store, "language_coverage") == 4
    # Volume counts every contact, the outbound ones included: 7.
    assert value(store, "ticket_volume") == 7


# --- merged contacts ---------------------------------------------------------------------------------


def test_response_rate_leaves_out_a_merged_duplicate_and_the_merge_comment_is_no_reply(
        store: Store, serve: Any) -> None:
    a = Account()
    # A: answered an hour after the customer wrote; the merge of D into it added a public comment at 09:20.
    a.ticket(11, ts(2, 9), 9101, status="open")
    a.say(11, ts(2, 9), 9101, channel="email")
    a.say(11, ts(2, 9, 20), AGENT, channel="web", rel="merge")
    a.say(11, ts(2, 10), AGENT)
    # B: never answered.
    a.ticket(12, ts(3, 9), 9102, status="open")
    a.say(12, ts(3, 9), 9102, channel="email")
    # C: answered in 30 minutes, solved, rated good.
    a.ticket(13, ts(4, 9), 9103, status="solved")
    a.say(13, ts(4, 9), 9103, channel="email")
    a.say(13, ts(4, 9, 30), AGENT)
    a.status(13, ts(4, 10), "solved", "open")
    a.legacy_rating(13, "good", ts(4, 10, 1), ts(4, 12), 9103)
    # D: A's requester wrote twice; D was merged into A (closed, tagged closed_by_merge) and rated bad.
    a.ticket(14, ts(2, 9, 5), 9101, status="closed", tags=("closed_by_merge",))
    a.say(14, ts(2, 9, 5), 9101, channel="email")
    a.say(14, ts(2, 9, 20), AGENT, public=False, channel="web", rel="merge")
    a.status(14, ts(2, 9, 20), "closed", "new")
    a.legacy_rating(14, "bad", ts(2, 9, 21), ts(2, 12), 9101)
    # E: an outbound e-mail nobody answered.
    a.ticket(15, ts(5, 9), 9104, status="pending", submitter=AGENT)
    a.say(15, ts(5, 9), AGENT)
    synced(store, serve, a)

    assert store.db.execute("SELECT status FROM contacts WHERE source_id = '14'").fetchone()[0] == "merged"
    # Answered of the customer-started contacts: A, C of A, B, C = 2 of 3 = 66.7 % (D merged, E outbound unanswered).
    assert value(store, "response_rate_pct") == near(200 / 3)
    # First response: A 09:00 -> 10:00 = 60 min (the merge comment at 09:20 is no reply), C 30 min: mean 45 min.
    assert value(store, "first_response_time_avg") == near(45.0)
    # Volume: A, B, C, E = 4 (D counts nowhere); repeat contacts: A, B, C from 3 requesters = 0 %.
    assert value(store, "ticket_volume") == 4
    assert value(store, "repeat_contact_rate_pct") == near(0.0)
    # D's rating goes with it: 1 response (C's, good) = 100 %; coverage: C of C = 100 %.
    assert value(store, "csat_responses") == 1
    assert value(store, "csat_pct") == near(100.0)
    assert value(store, "csat_response_rate_pct") == near(100.0)


# --- abandonment ---------------------------------------------------------------------------------------


def test_abandonment_is_decided_in_the_first_abandon_after(store: Store, serve: Any) -> None:
    now = datetime(2026, 3, 20, 12, 0, tzinfo=timezone.utc)
    a = Account()
    # C1 chat: answered after 5 minutes.
    a.ticket(21, ts(2, 9), 9201, status="solved", channel="chat")
    a.say(21, ts(2, 9), 9201, channel="chat")
    a.say(21, ts(2, 9, 5), AGENT, channel="chat")
    a.status(21, ts(2, 9, 20), "solved", "open")
    # C2 chat: answered 45 minutes after the customer wrote: too late, abandoned.
    a.ticket(22, ts(2, 10), 9202, status="solved", channel="chat")
    a.say(22, ts(2, 10), 9202, channel="chat")
    a.say(22, ts(2, 10, 45), AGENT, channel="chat")
    a.status(22, ts(2, 11), "solved", "open")
    # C3 WhatsApp: never answered, solved by an agent two hours later: abandoned.
    a.ticket(23, ts(3, 9), 9203, status="solved", channel="whatsapp")
    a.say(23, ts(3, 9), 9203, channel="whatsapp")
    a.status(23, ts(3, 11), "solved", "new")
    # C4 chat, proactive (an agent opened it): outbound, left out although nobody answered the customer.
    a.ticket(24, ts(4, 9), 9204, status="open", channel="chat", submitter=AGENT)
    a.say(24, ts(4, 9), AGENT, channel="chat")
    a.say(24, ts(4, 9, 10), 9204, channel="chat")
    # C5 chat, resolved by the answer bot alone: bot-only, left out.
    a.ticket(25, ts(5, 9), 9205, status="solved", channel="chat")
    a.say(25, ts(5, 9), 9205, channel="chat")
    a.say(25, ts(5, 9, 1), BOT_SEAT, channel="answer_bot")
    a.status(25, ts(5, 9, 10), "solved", "new")
    # C6 phone: a Talk call answered by an agent (submitted by the agent, still not outbound): answered.
    a.ticket(26, ts(6, 9), 9206, status="open", channel="voice", rel="inbound", submitter=AGENT)
    a.call(26, ts(6, 9), ts(6, 9, 2), 120, answered_by=AGENT)
    # C7 chat, ten minutes old at the time of computing with no reply yet: undecided, left out.
    a.ticket(27, ts(20, 11, 50), 9207, status="new", channel="chat")
    a.say(27, ts(20, 11, 50), 9207, channel="chat")
    # E1 e-mail, never answered: not a live channel.
    a.ticket(28, ts(9, 9), 9208, status="open")
    a.say(28, ts(9, 9), 9208, channel="email")
    synced(store, serve, a)

    assert store.db.execute("SELECT is_outbound FROM contacts WHERE source_id = '26'").fetchone()[0] == 0
    # Decided customer-started live contacts, not bot-only: C1, C2, C3, C6; abandoned: C2, C3 = 2 of 4 = 50 %.
    assert value(store, "abandonment_rate_pct", now=now) == near(50.0)


# --- handle time ---------------------------------------------------------------------------------------


def test_handle_time_is_the_record_else_the_first_live_session(store: Store, serve: Any) -> None:
    a = Account()
    # H1 phone: two answered calls (300 s; after a reopen 180 s) and a voicemail (40 s, nobody on the line).
    a.ticket(31, ts(2, 9), 9301, status="solved", channel="voice", rel="inbound", submitter=AGENT)
    a.call(31, ts(2, 9), ts(2, 9, 5), 300, answered_by=AGENT)
    a.status(31, ts(2, 9, 10), "solved", "open")
    a.call(31, ts(2, 13, 50), ts(2, 13, 51), 40, answered_by=None, rel="voicemail")
    a.status(31, ts(2, 13, 51), "open", "solved")
    a.call(31, ts(2, 14), ts(2, 14, 3), 180, answered_by=AGENT_2, rel="outbound")
    a.status(31, ts(2, 14, 5), "solved", "open")
    # H2 e-mail: the Time Tracking app logged 1200 s in its field (integers may come back as text).
    a.ticket(32, ts(3, 9), 9302, status="solved", custom_fields=((TIME_FIELD, "1200"), (360000999, None)))
    a.say(32, ts(3, 9), 9302, channel="email")
    a.say(32, ts(3, 10), AGENT)
    a.status(32, ts(3, 11), "solved", "open")
    # H3 chat, no record: live session from the first reply (09:02) over gaps of at most 30 min; the gap
    # 09:15 -> 10:00 (45 min) ends it. The private note at 09:40 does not bridge the gap; what follows the
    # first resolution (a reopen at 12:00) is not the first session.
    a.ticket(33, ts(4, 9), 9303, status="solved", channel="chat")
    a.say(33, ts(4, 9), 9303, channel="chat")
    a.say(33, ts(4, 9, 2), AGENT, channel="chat")
    a.say(33, ts(4, 9, 10), 9303, channel="chat")
    a.say(33, ts(4, 9, 15), AGENT, channel="chat")
    a.say(33, ts(4, 9, 40), AGENT, public=False, channel="chat")
    a.say(33, ts(4, 10), 9303, channel="chat")
    a.say(33, ts(4, 10, 5), AGENT, channel="chat")
    a.status(33, ts(4, 10, 10), "solved", "open")
    a.say(33, ts(4, 12), 9303, channel="chat")
    a.status(33, ts(4, 12), "open", "solved")
    a.say(33, ts(4, 12, 5), AGENT, channel="chat")
    a.status(33, ts(4, 12, 10), "solved", "open")
    # H4 chat: no human reply, solved: no handle time (unknown, not 0).
    a.ticket(34, ts(5, 9), 9304, status="solved", channel="chat")
    a.say(34, ts(5, 9), 9304, channel="chat")
    a.status(34, ts(5, 10), "solved", "new")
    # H5 phone: only a voicemail, answered by e-mail: no call anyone handled, and phone has no fallback.
    a.ticket(35, ts(6, 9), 9305, status="solved", channel="voice", rel="voicemail", submitter=AGENT)
    a.call(35, ts(6, 9), ts(6, 9, 1), 50, answered_by=None, rel="voicemail")
    a.say(35, ts(6, 10), AGENT)
    a.comments[35].append({"id": a.next_id(), "type": "Comment", "author_id": AGENT, "body": "We called you back",
                           "html_body": "<p>x</p>", "public": True, "attachments": [], "via": via("web"),
                           "created_at": ts(6, 10)})
    a.status(35, ts(6, 11), "solved", "open")
    synced(store, serve, a, handle_time_field=TIME_FIELD)

    recorded = dict(store.db.execute("SELECT source_id, handle_seconds FROM contacts").fetchall())
    assert recorded == {"31": 480.0, "32": 1200.0, "33": None, "34": None, "35": None}
    # H1 300 + 180 = 480 s, H2 1200 s, H3 09:02 -> 09:15 = 780 s; H4 and H5 unknown.
    # Mean (480 + 1200 + 780) / 3 = 820 s = 13.67 min.
    assert value(store, "handle_time_avg") == near(820 / 60)
    # The H1 calls were answered when they started: first response 0 min.
    assert value(store, "first_response_time_avg", segment={"channel": "phone"}, by=["channel"]) == near(
        # H1: call 09:00, answered 09:00 = 0 min; H5: voicemail 09:00, e-mail reply 10:00 = 60 min: mean 30.
        30.0)


# --- bots ------------------------------------------------------------------------------------------


def test_a_bot_greeting_does_not_make_a_contact_bot_only_a_bot_answer_does(store: Store, serve: Any) -> None:
    a = Account()
    # B1 messaging: the answer bot greets first, the customer writes, an agent answers at 09:05.
    a.ticket(41, ts(2, 9), 9401, status="solved", channel="native_messaging")
    a.say(41, ts(2, 9), AGENT_2, channel="answer_bot")
    a.say(41, ts(2, 9, 0, 30), 9401, channel="native_messaging")
    a.say(41, ts(2, 9, 5), AGENT, channel="native_messaging")
    a.status(41, ts(2, 9, 10), "solved", "open")
    # B2 messaging: the bot's greeting (its audit shown as "Answer Bot") and nothing after the customer.
    a.ticket(42, ts(3, 9), 9402, status="solved", channel="native_messaging")
    a.say(42, ts(3, 9), AGENT_2, own_via=False, shown="Answer Bot")
    a.say(42, ts(3, 9, 1), 9402, channel="native_messaging")
    a.status(42, ts(3, 9, 40), "solved", "new")
    # B3 messaging: the AI agent answers the customer and the ticket is solved: bot-only.
    a.ticket(43, ts(4, 9), 9403, status="solved", channel="native_messaging")
    a.say(43, ts(4, 9), 9403, channel="native_messaging")
    a.say(43, ts(4, 9, 0, 30), AGENT_2, channel="ai_agent")
    a.status(43, ts(4, 9, 5), "solved", "new")
    # B4 chat: a bot posting through an ordinary agent seat the admin lists in bot_agent_ids: bot-only.
    a.ticket(44, ts(5, 9), 9404, status="solved", channel="chat")
    a.say(44, ts(5, 9), 9404, channel="chat")
    a.say(44, ts(5, 9, 1), BOT_SEAT, channel="chat")
    a.status(44, ts(5, 9, 3), "solved", "new")
    # B5 e-mail: a trigger's acknowledgement is no reply (and no bot); the agent answers two hours later.
    a.ticket(45, ts(6, 9), 9405, status="solved")
    a.say(45, ts(6, 9), 9405, channel="email")
    a.say(45, ts(6, 9, 0, 5), AGENT, channel="rule", rel="trigger")
    a.say(45, ts(6, 11), AGENT)
    a.status(45, ts(6, 12), "solved", "open")
    # B6 e-mail: only the trigger's acknowledgement, then solved: unanswered, not bot-only.
    a.ticket(46, ts(7, 9), 9406, status="solved")
    a.say(46, ts(7, 9), 9406, channel="email")
    a.say(46, ts(7, 9, 0, 5), AGENT, channel="rule", rel="trigger")
    a.status(46, ts(7, 10), "solved", "new")
    synced(store, serve, a)

    # Bot-only: B3, B4 of 6 resolved = 33.3 %.
    assert value(store, "bot_deflection_rate_pct") == near(200 / 6)
    # Response rate over the others: answered B1, B5 of B1, B2, B5, B6 = 50 %.
    assert value(store, "response_rate_pct") == near(50.0)
    # First response, from when the customer opened the contact (catalogue 1: `created_at`; B1's ticket was
    # opened by the bot's greeting, its customer wrote at 09:00:30): B1 09:00:30 -> 09:05 = 4.5 min,
    # B5 09:00 -> 11:00 = 120 min: mean 62.25 min.
    assert value(store, "first_response_time_avg") == near(62.25)
    # Abandonment (live, not bot-only): B1 answered, B2 not: 1 of 2 = 50 %.
    assert value(store, "abandonment_rate_pct") == near(50.0)


# --- CSAT scales ------------------------------------------------------------------------------------


def _question(sub_type: str | None, options: range | None) -> dict[str, Any]:
    question: dict[str, Any] = {"id": "01J58KJ9RAE0D2EK7HRVM7Z8F3", "type": "rating_scale_numeric", "alias": "csat",
                                "headline": {"type": "static", "value": "How satisfied were you?"}}
    if sub_type is not None:
        question["sub_type"] = sub_type
    if options is not None:
        question["options"] = [{"id": f"01J58KJ9RAE0D2EK7HRVM7Z{v:03d}", "rating": v,
                                "label": {"type": "static", "value": str(v)}} for v in options]
    return question


def _rating(rating: int, options: range | None, at: str, sub_type: str | None = "customer_satisfaction",
            category: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"type": "rating_scale", "rating": rating, "question": _question(sub_type, options),
                              "created_at": at, "updated_at": at}
    if category is not None:
        answer["rating_category"] = category
    return answer


def test_csat_reads_both_histories_each_answer_on_its_scale_and_counts_the_undecidable_nowhere(
        store: Store, serve: Any) -> None:
    a = Account()
    for i in range(1, 13):  # S1..S12, each answered and solved on March i
        tid, requester = 50 + i, 9500 + i
        a.ticket(tid, ts(i, 9), requester, status="solved")
        a.say(tid, ts(i, 9), requester, channel="email")
        a.say(tid, ts(i, 9, 30), AGENT)
        a.status(tid, ts(i, 10), "solved", "open")
    at = ts(14, 12)
    # Legacy ratings, from before the move to the new CSAT: good, bad, and an offer never answered.
    a.legacy_rating(51, "good", ts(1, 10, 1), ts(1, 12), 9501)
    a.legacy_rating(52, "bad", ts(2, 10, 1), ts(2, 12), 9502)
    a.legacy_rating(53, "offered", ts(3, 10, 1), ts(3, 10, 1), 9503)
    # New CSAT: the scale is the options of the question whose sub_type is customer_satisfaction.
    other = _rating(1, range(1, 6), at, sub_type="other")  # another rating question of the survey: not CSAT
    remark = {"type": "open_ended", "value": "Quick answer", "created_at": at, "updated_at": at,
              "question": {"id": "01GFYBENPDGN1R6NAA4WRDNVFR", "type": "open_ended", "alias": "comment"}}
    a.survey_response(54, 9504, [other, _rating(4, range(1, 6), at), remark])  # 1-5: 4 positive
    a.survey_response(55, 9505, [_rating(3, range(1, 6), at)])  # 1-5: 3 not
    a.survey_response(56, 9506, [_rating(9, range(0, 11), at)])  # 0-10: 9 positive (9, 10)
    a.survey_response(57, 9507, [_rating(5, range(1, 8), at)])  # 1-7: 5 not (6, 7)
    a.survey_response(58, 9508, [_rating(3, range(1, 4), at)])  # 1-3: 3 positive
    a.survey_response(59, 9509, [_rating(8, range(1, 11), at)])  # 1-10: 8 not (9, 10)
    a.survey_response(60, 9510, [_rating(4, None, at)])  # no options, no category: undecidable
    a.survey_response(61, 9511, [_rating(7, range(1, 6), at)])  # outside its 1-5 options: undecidable
    a.survey_response(62, 9512, [{"type": "skipped", "created_at": at, "updated_at": at,
                                  "question": _question("customer_satisfaction", range(1, 6))}])  # not answered
    synced(store, serve, a)

    # Decided responses: legacy good, bad; new 4/5, 3/5, 9/10, 5/7, 3/3, 8/10 = 8 (S10, S11 undecidable).
    assert value(store, "csat_responses") == 8
    # Positive: good, 4 of 1-5, 9 of 0-10, 3 of 1-3 = 4 of 8 = 50 %.
    assert value(store, "csat_pct") == near(50.0)
    # Resolved contacts with a decided response: S1, S2, S4..S9 = 8 of 12 = 66.7 %.
    assert value(store, "csat_response_rate_pct") == near(200 / 3)


# --- status history ----------------------------------------------------------------------------------


def test_reopens_come_from_the_status_events(store: Store, serve: Any) -> None:
    a = Account()
    # R1: solved, reopened by the customer's reply the next day, solved again: 1 reopen.
    a.ticket(71, ts(2, 9), 9701, status="solved")
    a.say(71, ts(2, 9), 9701, channel="email")
    a.say(71, ts(2, 9, 30), AGENT)
    a.status(71, ts(2, 10), "solved", "open")
    a.say(71, ts(3, 9), 9701, channel="email")
    a.status(71, ts(3, 9), "open", "solved")
    a.say(71, ts(3, 9, 30), AGENT)
    a.status(71, ts(3, 10), "solved", "open")
    # R2: solved, then closed by the automation: no reopen.
    a.ticket(72, ts(4, 9), 9702, status="closed")
    a.say(72, ts(4, 9), 9702, channel="email")
    a.say(72, ts(4, 9, 30), AGENT)
    a.status(72, ts(4, 10), "solved", "open")
    a.status(72, ts(8, 10), "closed", "solved")
    # R3: solved and reopened twice (one change given as an audit's field_name/value event): 2 reopens.
    a.ticket(73, ts(5, 9), 9703, status="solved")
    a.say(73, ts(5, 9), 9703, channel="email")
    a.say(73, ts(5, 9, 30), AGENT)
    a.status(73, ts(5, 10), "solved", "open")
    a.status(73, ts(5, 11), "pending", "solved", audit_form=True)
    a.status(73, ts(5, 12), "solved", "pending")
    a.status(73, ts(6, 9), "open", "solved")
    a.status(73, ts(6, 10), "solved", "open", audit_form=True)
    # R4: solved once.
    a.ticket(74, ts(6, 9), 9704, status="solved")
    a.say(74, ts(6, 9), 9704, channel="email")
    a.say(74, ts(6, 9, 30), AGENT)
    a.status(74, ts(6, 10), "solved", "open")
    # R5: open <-> pending before the one resolution: no reopen.
    a.ticket(75, ts(7, 9), 9705, status="solved")
    a.say(75, ts(7, 9), 9705, channel="email")
    a.say(75, ts(7, 9, 30), AGENT)
    a.status(75, ts(7, 9, 30), "pending", "open")
    a.status(75, ts(7, 11), "open", "pending")
    a.status(75, ts(7, 12), "solved", "open")
    synced(store, serve, a)

    reopens = dict(store.db.execute("SELECT source_id, reopens FROM contacts").fetchall())
    assert reopens == {"71": 1, "72": 0, "73": 2, "74": 0, "75": 0}
    # Resolved contacts with a reopen: R1, R3 of 5 = 40 %.
    assert value(store, "reopen_rate_pct") == near(40.0)


# --- platform ------------------------------------------------------------------------------------------


def test_platform_segment_reads_the_network_apart_from_the_channel(store: Store, serve: Any) -> None:
    a = Account()
    channels: list[tuple[str | int, tuple[str, ...]]] = [
        ("instagram_dm", ()), ("chat", ()), ("native_messaging", ()), ("whatsapp", ()), ("whatsapp", ()),
        ("whatsapp", ("closed_by_merge",)),  # merged: counts nowhere
        ("facebook", ()), ("line", ()), ("email", ()), (4, ()),  # 4: the numeric via id of e-mail
        ("voice", ()),
    ]
    for i, (channel, tags) in enumerate(channels):
        tid = 80 + i
        status = "closed" if tags else "open"
        a.ticket(tid, ts(2 + i, 9), 9800 + i, status=status, channel=channel, tags=tags)
        a.say(tid, ts(2 + i, 9), 9800 + i, channel=str(channel))
    synced(store, serve, a)

    def volume(platform: str) -> Any:
        return row(store, "ticket_volume", segment={"platform": platform}, by=["platform"])["value"]

    # instagram_dm -> instagram; chat and native_messaging -> web_chat (a website or in-app widget);
    # two WhatsApp tickets (the merged third counts nowhere); Messenger -> facebook; LINE; e-mail twice.
    expected = {"instagram": 1, "web_chat": 2, "whatsapp": 2, "facebook": 1, "line": 1, "email": 2, "phone": 1}
    assert {p: volume(p) for p in expected} == expected
    # Channels still group them: social = instagram + facebook = 2; messaging = native + 2 WhatsApp + LINE = 4.
    assert row(store, "ticket_volume", segment={"channel": "social"}, by=["channel"])["value"] == 2
    assert row(store, "ticket_volume", segment={"channel": "messaging"}, by=["channel"])["value"] == 4
