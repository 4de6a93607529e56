"""Every KPI of the catalogue on a small hand-built store, its expected value worked out here.

Datasets sit in March 2026 and "now" is 2026-04-20 12:00 UTC unless a test says otherwise.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from kpi_fixtures import NOW, Data, make_store, row, rows, ts, value

from connectors.freshdesk.normalize import FRESHDESK_SCALE
from kpi_core.kpis.catalogue import CATALOGUE_IDS, COUNT_KPIS, KPIS
from kpi_core.settings import KpiSettings
from kpi_core.status import undecided_csat

ROOT = Path(__file__).resolve().parent.parent

# Every hand-computed case, on a SQLite store and on a PostgreSQL account (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_both_stores")


def test_every_kpi_runs_on_an_empty_store(tmp_path: Path) -> None:
    found = {r["kpi"]: r for r in rows(make_store(tmp_path))}
    assert set(CATALOGUE_IDS) - {"channel_mix_pct"} == set(found)  # no channel, no mix row
    for kpi_id, r in found.items():
        if kpi_id in COUNT_KPIS:
            assert (r["value"], r["status"]) == (0, "info" if r["target"] is None else "ok"), kpi_id
        else:
            assert (r["value"], r["status"]) == (None, "no_data"), kpi_id


def test_the_catalogue_is_complete_and_documented() -> None:
    listed = {k.id for k in KPIS if not k.hidden and not k.business_hours}
    assert listed == set(CATALOGUE_IDS) and len(CATALOGUE_IDS) == 44
    page = (ROOT / "docs" / "kpi-definitions.md").read_text()
    for kpi in KPIS:
        if not kpi.hidden:
            assert f"`{kpi.id}`" in page, f"docs/kpi-definitions.md does not define {kpi.id}"


# --- volume and mix ---------------------------------------------------------------------------------------


def test_ticket_volume_counts_outbound_but_not_deleted_or_other_months(tmp_path: Path) -> None:
    d = Data()
    d.contact("1", ts(2))
    d.contact("2", ts(31, 23, 59, 59))
    d.contact("3", ts(5), is_outbound=True)
    d.contact("4", ts(6), status="deleted")
    d.contact("5", ts(28, month=2))
    d.contact("6", ts(1, 0, 0, 0, month=4))
    assert value(make_store(tmp_path, d), "ticket_volume") == 3


def test_channel_mix_is_always_by_channel_and_shares_the_segment(tmp_path: Path) -> None:
    d = Data()
    for i, (channel, language) in enumerate([("email", "en"), ("email", "en"), ("chat", "en"), ("phone", "de")]):
        d.contact(str(i), ts(3), channel=channel, language=language)
    store = make_store(tmp_path, d)
    mix = {r["segment"]["channel"]: (r["value"], r["numerator"], r["denominator"])
           for r in rows(store, kpis=["channel_mix_pct"])}
    assert mix == {"email": (50.0, 2, 4), "chat": (25.0, 1, 4), "phone": (25.0, 1, 4)}
    by_language = {(r["segment"]["language"], r["segment"]["channel"]): r["value"]
                   for r in rows(store, kpis=["channel_mix_pct"], by=["language"])}
    assert by_language == {("en", "email"): pytest.approx(66.6667), ("en", "chat"): pytest.approx(33.3333),
                           ("de", "phone"): 100.0}


# --- speed --------------------------------------------------------------------------------------------------


def _replies() -> Data:
    d = Data()
    for i, minutes in enumerate([1, 2, 3, 4, 10]):
        d.contact(f"r{i}", ts(2 + i), reply=minutes)
    d.contact("unanswered", ts(9))
    # Outbound: measured from the customer's first message (5 min); without one it is left out.
    d.contact("out", ts(10), is_outbound=True, first_customer_message_at=ts(10, 10), reply=5)
    d.contact("out-silent", ts(11), is_outbound=True, first_agent_reply_at=ts(11, 9, 1), agent_replies=1)
    return d


def test_first_response_time_average_median_and_p90_nearest_rank(tmp_path: Path) -> None:
    store = make_store(tmp_path, _replies())  # values 1, 2, 3, 4, 5, 10 minutes
    assert value(store, "first_response_time_avg") == pytest.approx(25 / 6, abs=1e-4)
    assert value(store, "first_response_time_median") == 3.0  # rank ceil(0.5 * 6) = 3
    assert value(store, "first_response_time_p90") == 10.0  # rank ceil(0.9 * 6) = 6
    median = row(store, "first_response_time_median")
    assert (median["n"], median["unit"], median["target"], median["status"]) == (6, "minutes", None, "info")


def test_response_rate_leaves_out_bot_only_and_never_written_outbound(tmp_path: Path) -> None:
    d = _replies()  # 6 answered of 7 answerable (the silent outbound left out)
    d.contact("bot", ts(12), channel="chat", status="resolved", first_resolved_at=ts(12, 9, 5),
              has_bot_message=True, agent_replies=0)
    r = row(make_store(tmp_path, d), "response_rate_pct")
    assert (r["numerator"], r["denominator"]) == (6, 7)
    assert r["value"] == pytest.approx(600 / 7, abs=1e-4) and r["status"] == "breach"  # target >= 98


def test_service_level_counts_late_and_overdue_as_missed_and_leaves_out_the_still_waiting(tmp_path: Path) -> None:
    now = datetime(2026, 4, 20, 12, 0, tzinfo=timezone.utc)
    d = Data()
    d.contact("chat-fast", ts(20, 9, month=4), channel="chat", reply=1)  # within 2 min
    d.contact("chat-slow", ts(20, 9, month=4), channel="chat", reply=5)  # missed
    d.contact("chat-overdue", ts(20, 9, month=4), channel="chat")  # unanswered for hours: missed
    d.contact("chat-waiting", ts(20, 11, 59, month=4), channel="chat")  # 1 min old: left out
    d.contact("email", ts(18, month=4), reply=23 * 60)  # within 24 h
    d.contact("other", ts(18, month=4), channel="other", reply=23 * 60)  # `other` uses the email target
    d.contact("bot", ts(20, 9, month=4), channel="chat", status="resolved", first_resolved_at=ts(20, 9, 1, month=4),
              has_bot_message=True)
    r = row(make_store(tmp_path, d), "service_level_pct", since=date(2026, 4, 1), until=date(2026, 5, 1), now=now)
    assert (r["numerator"], r["denominator"], r["value"]) == (3, 5, 60.0)


def test_abandonment_is_decided_abandon_after_the_first_customer_message(tmp_path: Path) -> None:
    now = datetime(2026, 4, 20, 12, 0, tzinfo=timezone.utc)
    d = Data()
    d.contact("gave-up", ts(20, 9, month=4), channel="chat", status="resolved", first_resolved_at=ts(20, 10, month=4))
    d.contact("idle", ts(20, 9, month=4), channel="messaging", last_activity_at=ts(20, 9, 5, month=4))
    d.contact("late-reply", ts(20, 9, month=4), channel="chat", reply=45)  # answered after 45 min: abandoned
    d.contact("recent", ts(20, 11, 50, month=4), channel="chat", last_activity_at=ts(20, 11, 50, month=4))
    d.contact("bot", ts(20, 9, month=4), channel="chat", status="resolved", first_resolved_at=ts(20, 9, 1, month=4),
              has_bot_message=True)
    d.contact("answered", ts(20, 9, month=4), channel="phone", reply=0.2)
    d.contact("proactive", ts(20, 9, month=4), channel="chat", is_outbound=True,  # agent-started: left out
              first_customer_message_at=ts(20, 9, 10, month=4))
    d.contact("email", ts(20, 9, month=4))  # not a live channel
    r = row(make_store(tmp_path, d), "abandonment_rate_pct", since=date(2026, 4, 1), until=date(2026, 5, 1), now=now)
    # gave-up, idle and late-reply abandoned; answered not; recent undecided (10 min old), bot-only and
    # the proactive chat left out: 3 of 4.
    assert (r["numerator"], r["denominator"], r["value"]) == (3, 4, 75.0)


def test_resolution_times_are_anchored_on_resolution(tmp_path: Path) -> None:
    d = Data()
    for i, hours in enumerate([2, 4, 10]):
        d.contact(f"c{i}", ts(3 + i), resolved=hours)
    d.contact("feb", ts(28, 9, month=2), resolved=24)  # resolved 1 March: counts in March
    d.contact("april", ts(31, 9), resolved=48)  # resolved in April: not in March
    store = make_store(tmp_path, d)
    assert value(store, "resolution_time_avg") == pytest.approx(10.0)  # (2 + 4 + 10 + 24) / 4
    assert value(store, "resolution_time_median") == 4.0  # rank 2 of 4
    assert row(store, "resolution_time_median")["status"] == "ok"  # target <= 12 h


def test_full_resolution_time_uses_the_last_resolution(tmp_path: Path) -> None:
    d = Data()
    d.contact("reopened", ts(1, 0), status="resolved", first_resolved_at=ts(1, 2), last_resolved_at=ts(3, 0),
              reopens=1)
    d.contact("plain", ts(10, 0), resolved=4)
    d.contact("later", ts(30, 0), status="resolved", first_resolved_at=ts(30, 2), last_resolved_at=ts(2, 0, month=4))
    assert value(make_store(tmp_path, d), "full_resolution_time_avg") == pytest.approx(26.0)  # (48 + 4) / 2


def test_handle_time_uses_records_then_the_first_live_session(tmp_path: Path) -> None:
    d = Data()
    d.contact("a", ts(2), resolved=1, handle_seconds=600.0)
    d.contact("b", ts(3), resolved=1, handle_seconds=1200.0)
    d.contact("chat", ts(4, 9), channel="chat", first_agent_reply_at=ts(4, 9, 1), agent_replies=3,
              status="resolved", first_resolved_at=ts(4, 11), last_resolved_at=ts(4, 11))
    d.message("chat", "customer", ts(4, 9))
    d.message("chat", "agent", ts(4, 9, 1))
    d.message("chat", "customer", ts(4, 9, 4))
    d.message("chat", "agent", ts(4, 9, 8), public=False)  # a note: not handling
    d.message("chat", "bot", ts(4, 9, 9))  # a bot: not handling
    d.message("chat", "agent", ts(4, 9, 7))  # the session's last message
    d.message("chat", "customer", ts(4, 10, 30))  # after an 83-minute wait: a new session
    d.message("chat", "agent", ts(4, 10, 35))
    d.contact("no-human", ts(6, 9), channel="messaging", status="resolved", first_resolved_at=ts(6, 10))
    d.message("no-human", "customer", ts(6, 9))  # nobody answered: unknown, not 0
    d.contact("phone", ts(7, 9), channel="phone", resolved=1, reply=1)  # a call without a record: unknown
    d.contact("email-unknown", ts(5), resolved=1, reply=5)
    # 600 s, 1200 s and the chat's 09:01-09:07 session (360 s): (10 + 20 + 6) / 3 = 12 min
    assert value(make_store(tmp_path, d), "handle_time_avg") == pytest.approx(12.0)


# --- resolution ---------------------------------------------------------------------------------------------


def _resolved() -> Data:
    d = Data()
    d.contact("one-touch", ts(2), resolved=1, reply=5)
    d.contact("two-replies", ts(3), resolved=1, reply=5, agent_replies=2)
    d.contact("reopened-twice", ts(4), resolved=1, reply=5, reopens=2)
    d.contact("no-reply", ts(5), resolved=1, agent_replies=0)
    return d


def test_one_touch_resolution_needs_one_reply_and_no_reopen(tmp_path: Path) -> None:
    r = row(make_store(tmp_path, _resolved()), "one_touch_resolution_pct")
    assert (r["numerator"], r["denominator"]) == (1, 3)  # the contact without a reply is left out
    assert r["value"] == pytest.approx(33.3333) and r["target"] == 70.0 and r["status"] == "breach"


def test_reopen_rate_touches_and_bot_deflection(tmp_path: Path) -> None:
    d = _resolved()
    d.contact("bot", ts(6), channel="chat", resolved=0.1, has_bot_message=True)
    store = make_store(tmp_path, d)
    reopen = row(store, "reopen_rate_pct")
    assert (reopen["numerator"], reopen["denominator"], reopen["value"]) == (1, 5, 20.0)  # reopened twice = 1
    assert value(store, "agent_touches_avg") == pytest.approx((1 + 2 + 1 + 0 + 0) / 5)
    assert value(store, "bot_deflection_rate_pct") == 20.0


def test_fcr_needs_no_return_within_the_window_and_a_passed_window(tmp_path: Path) -> None:
    d = Data()
    d.contact("kept", ts(1), resolved=1, reply=5, requester_id="r1")
    d.contact("came-back", ts(2), resolved=1, reply=5, requester_id="r2")
    d.contact("r2-again", ts(5), requester_id="r2")  # 3 days later: undoes "came-back"
    d.contact("late-return", ts(3), resolved=1, reply=5, requester_id="r3")
    d.contact("r3-again", ts(15), requester_id="r3")  # 12 days later: outside the 7-day window
    d.contact("agent-again", ts(4), resolved=1, reply=5, requester_id="r4")
    d.contact("r4-outbound", ts(6), requester_id="r4", is_outbound=True)  # the agent reached out: not a return
    d.contact("two-replies", ts(7), resolved=1, reply=5, agent_replies=2, requester_id="r5")
    d.contact("april", ts(15, month=4), resolved=1, reply=5, requester_id="r6")  # window ends 22 April
    store = make_store(tmp_path, d)
    fcr = row(store, "fcr_pct")
    assert (fcr["numerator"], fcr["denominator"], fcr["value"]) == (3, 5, 60.0)
    april = row(store, "fcr_pct", since=date(2026, 4, 1), until=date(2026, 5, 1))
    assert (april["value"], april["denominator"], april["status"]) == (None, 0, "no_data")


def test_repeat_contact_rate_counts_contacts_beyond_the_first_per_requester(tmp_path: Path) -> None:
    d = Data()
    for i, requester in enumerate(["r1", "r1", "r2", "r3", "r3"]):
        d.contact(str(i), ts(2 + i), requester_id=requester)
    d.contact("anonymous", ts(9))  # no requester: its own distinct one
    r = row(make_store(tmp_path, d), "repeat_contact_rate_pct")
    assert (r["numerator"], r["denominator"]) == (2, 6) and r["value"] == pytest.approx(33.3333)


def test_backlog_follows_status_history_else_first_resolution(tmp_path: Path) -> None:
    d = Data()
    d.contact("open", ts(2))
    d.contact("closed", ts(3), resolved=48)
    d.contact("from-feb", ts(20, month=2), status="resolved", first_resolved_at=ts(10), last_resolved_at=ts(10))
    d.contact("reopened", ts(5), status="open", first_resolved_at=ts(6), last_resolved_at=ts(6), reopens=1)
    d.event("reopened", "resolved", ts(6))
    d.event("reopened", "reopened", ts(20))
    d.contact("re-resolved", ts(5), status="resolved", first_resolved_at=ts(6), last_resolved_at=ts(15), reopens=1)
    for kind, day in (("resolved", 6), ("reopened", 10), ("resolved", 15)):
        d.event("re-resolved", kind, ts(day))
    # Freshdesk-like: a reopen but no status history: the first resolution decides.
    d.contact("no-history", ts(5), status="open", first_resolved_at=ts(6), last_resolved_at=ts(6), reopens=1)
    d.contact("deleted", ts(5), status="deleted")
    d.contact("april", ts(2, month=4))
    store = make_store(tmp_path, d)
    assert value(store, "backlog") == 2  # "open" and "reopened" at 1 April 00:00
    assert value(store, "backlog", since=date(2026, 4, 1), until=date(2026, 5, 1)) == 3  # at now, April running
    assert value(store, "backlog", since=date(2026, 2, 1), until=date(2026, 3, 1)) == 1  # "from-feb"
    weekly = {r["period_start"]: r["value"] for r in rows(store, period="week", since=date(2026, 3, 2),
                                                           until=date(2026, 3, 23), kpis=["backlog"])}
    # 9 March: open, from-feb; 16 March: open (re-resolved closed again on the 15th); 23 March: open, reopened.
    assert weekly == {"2026-03-02": 2, "2026-03-09": 1, "2026-03-16": 2}


# --- satisfaction -------------------------------------------------------------------------------------------


def test_csat_reads_each_scale_and_leaves_out_deleted_contacts(tmp_path: Path) -> None:
    d = Data()
    d.contact("deleted", ts(2), status="deleted")
    answers = [("good_bad", 1), ("good_bad", 1), ("good_bad", 0),  # good = positive
               ("1-5", 5), ("1-5", 4), ("1-5", 3),  # the top two points
               ("freshdesk", 103), ("freshdesk", 100),  # a connector's coded scale: its stored flag counts
               ("1-7", 6), ("1-7", 5)]  # top 20 % of the points: 6 and 7
    for i, (scale, score) in enumerate(answers):
        coded = FRESHDESK_SCALE.is_positive(score) if scale == FRESHDESK_SCALE.name else None
        d.survey(f"s{i}", "csat", score, scale, ts(10 + i), is_positive=coded)
    d.survey("on-deleted", "csat", 1, "good_bad", ts(3), contact="deleted")
    d.survey("nps", "nps", 10, "0-10", ts(3))
    store = make_store(tmp_path, d)
    csat = row(store, "csat_pct")
    assert (csat["numerator"], csat["denominator"], csat["value"], csat["status"]) == (6, 10, 60.0, "breach")
    assert value(store, "csat_responses") == 10


def test_an_undecidable_csat_answer_counts_nowhere_until_its_scale_is_stated(tmp_path: Path) -> None:
    d = Data()
    d.contact("rated", ts(2), resolved=2, reply=5)
    d.contact("mystery-rated", ts(3), resolved=2, reply=5)
    d.survey("a", "csat", 4, "1-4", ts(4), contact="rated")  # a range no table lists: top 20 % of 1-4 is 4
    d.survey("b", "csat", 3, "1-4", ts(4))  # not positive
    d.survey("c", "csat", 9, "1-5", ts(5))  # outside its scale: undecidable
    d.survey("d", "csat", 2, "stars", ts(6), contact="mystery-rated")  # an unknown scale: undecidable
    d.survey("e", "csat", 3, "stars", ts(7))
    store = make_store(tmp_path, d)
    # 1 positive of the 2 decidable answers; coverage: "rated" only, of the 2 resolved contacts.
    assert (row(store, "csat_pct")["numerator"], row(store, "csat_pct")["denominator"]) == (1, 2)
    assert value(store, "csat_responses") == 2
    assert value(store, "csat_response_rate_pct") == 50.0
    undecided = {u["scale"]: (u["responses"], u["lowest_score"], u["highest_score"])
                 for u in undecided_csat(store, "zendesk", {})}
    assert undecided == {"stars": (2, 2.0, 3.0), "1-5": (1, 9.0, 9.0)}
    # Stated as 1-3 ("zendesk:stars"): 3 is positive (top 20 % of 1-3), 2 is not: 2 of 4 answers, both contacts.
    stated = KpiSettings(csat_scales={"zendesk:stars": "1-3"})
    assert (row(store, "csat_pct", stated)["numerator"], row(store, "csat_pct", stated)["denominator"]) == (2, 4)
    assert value(store, "csat_responses", stated) == 4
    assert value(store, "csat_response_rate_pct", stated) == 100.0
    assert [u["scale"] for u in undecided_csat(store, "zendesk", stated.csat_scales)] == ["1-5"]


def test_a_stated_csat_scale_must_be_known() -> None:
    with pytest.raises(ValueError, match="unknown scale"):
        KpiSettings(csat_scales={"zendesk:stars": "lots"})
    with pytest.raises(ValueError, match="SOURCE:SCALE"):
        KpiSettings(csat_scales={"stars": "1-5"})


def test_csat_one_to_five_against_good_bad(tmp_path: Path) -> None:
    d = Data()
    d.survey("a", "csat", 4, "1-5", ts(2))
    d.survey("b", "csat", 3, "1-5", ts(2))
    store = make_store(tmp_path, d)
    assert value(store, "csat_pct") == 50.0
    d2 = Data()
    d2.survey("a", "csat", 1, "good_bad", ts(2))
    d2.survey("b", "csat", 1, "good_bad", ts(2))
    assert value(make_store(tmp_path, d2, "other.sqlite"), "csat_pct") == 100.0


def test_csat_coverage_counts_resolved_contacts_with_an_answer(tmp_path: Path) -> None:
    d = _resolved()
    d.survey("s1", "csat", 1, "good_bad", ts(20), contact="one-touch")
    d.survey("s2", "csat", 0, "good_bad", ts(20), contact="two-replies")
    d.survey("s3", "csat", 1, "good_bad", ts(21), contact="two-replies")
    r = row(make_store(tmp_path, d), "csat_response_rate_pct")
    assert (r["numerator"], r["denominator"], r["value"]) == (2, 4, 50.0)


@pytest.mark.parametrize(("scores", "expected"), [
    ([10, 9, 8, 7, 6, 0], 0.0),  # 2 promoters, 2 detractors
    ([7, 8, 8], 0.0),  # only passives: 0, not "no data"
    ([9, 10, 10, 3], 50.0),  # 75 % - 25 %
])
def test_nps(tmp_path: Path, scores: list[int], expected: float) -> None:
    d = Data()
    for i, score in enumerate(scores):
        d.survey(f"n{i}", "nps", score, "0-10", ts(5 + i))
    store = make_store(tmp_path, d)
    assert value(store, "nps") == expected
    assert value(store, "nps_responses") == len(scores)


def test_nps_and_ces_without_a_source_are_no_data(tmp_path: Path) -> None:
    d = Data()
    d.survey("c", "csat", 1, "good_bad", ts(2))
    store = make_store(tmp_path, d)
    assert (value(store, "nps"), value(store, "nps_responses"), value(store, "ces_avg")) == (None, 0, None)
    assert row(store, "nps")["status"] == "no_data"


def test_ces_is_on_one_to_seven_with_other_scales_rescaled(tmp_path: Path) -> None:
    d = Data()
    d.survey("a", "ces", 7, "1-7", ts(2))
    d.survey("b", "ces", 5, "1-7", ts(3))
    d.survey("c", "ces", 5, "1-5", ts(4))  # top of 1-5 -> 7
    d.survey("d", "ces", 3, "1-5", ts(5))  # middle of 1-5 -> 4
    assert value(make_store(tmp_path, d), "ces_avg") == pytest.approx((7 + 5 + 7 + 4) / 4)


# --- coverage -----------------------------------------------------------------------------------------------


def test_language_coverage_counts_answered_languages_but_not_und(tmp_path: Path) -> None:
    d = Data()
    for i, (language, replied) in enumerate([("en", True), ("de", True), ("en", True), ("und", True),
                                             ("fr", False)]):
        d.contact(str(i), ts(2 + i), language=language, **({"reply": 5} if replied else {}))
    assert value(make_store(tmp_path, d), "language_coverage") == 2


def test_retention_counts_last_periods_requesters_who_come_back_or_rate(tmp_path: Path) -> None:
    d = Data()
    for requester in ("r1", "r2", "r3", "r4"):
        d.contact(f"feb-{requester}", ts(10, month=2), requester_id=requester)
    d.contact("mar-r1", ts(5), requester_id="r1")  # came back
    d.survey("r2-rates", "csat", 1, "good_bad", ts(6), requester="r2")  # rated again
    d.contact("mar-r3", ts(7), requester_id="r3", is_outbound=True)  # only reached out to: not a return
    d.contact("mar-r9", ts(8), requester_id="r9")  # new in March: not in the base
    r = row(make_store(tmp_path, d), "customer_retention_pct")
    assert (r["numerator"], r["denominator"], r["value"], r["target"], r["status"]) == (2, 4, 50.0, None, "info")


# --- cost (business inputs) ---------------------------------------------------------------------------------


def _volume_and_resolutions() -> Data:
    d = Data()
    for i in range(4):
        d.contact(str(i), ts(2 + i), resolved=1 if i < 2 else None, reply=5, assignee_id="a1" if i < 2 else None,
                  handle_seconds=1800.0 if i < 2 else None)
    return d


def test_cost_kpis_use_inputs_prorated_by_days_and_say_no_data_without(tmp_path: Path) -> None:
    store = make_store(tmp_path, _volume_and_resolutions())
    assert [value(store, k) for k in ("cost_per_interaction", "cost_per_resolution", "interactions_per_order")] \
        == [None, None, None]
    settings = KpiSettings(inputs=[
        {"kind": "operating_cost", "start": "2026-03-01", "end": "2026-04-01", "value": 1000},
        {"kind": "orders", "start": "2026-01-01", "end": "2026-04-01", "value": 900},  # a quarter: 310 for March
    ])
    from kpi_core.kpis.api import compute

    compute(store, settings, date(2026, 3, 1), date(2026, 4, 1), grains=["month"], segments=[[]], now=NOW)
    assert value(store, "cost_per_interaction", settings) == 250.0  # 1000 / 4 contacts
    assert value(store, "cost_per_resolution", settings) == 500.0  # 1000 / 2 resolved
    assert value(store, "interactions_per_order", settings) == pytest.approx(4 / (900 * 31 / 90), abs=1e-4)
    # A quarter with one month of cost is not covered: no value rather than a third of the truth.
    quarter = rows(store, settings, period="quarter", since=date(2026, 1, 1), until=date(2026, 4, 1),
                   kpis=["cost_per_interaction"])
    assert [r["value"] for r in quarter] == [None]


def test_agent_utilization_is_handle_time_over_available_hours(tmp_path: Path) -> None:
    settings = KpiSettings(inputs=[{"kind": "available_hours", "start": "2026-03-01", "end": "2026-04-01",
                                    "value": 10, "agent": "zendesk:a1"}],
                           targets={"agent_utilization_pct": [70, 85]})
    store = make_store(tmp_path, _volume_and_resolutions())
    from kpi_core.kpis.api import compute

    compute(store, settings, date(2026, 3, 1), date(2026, 4, 1), grains=["month"], segments=[[], ["agent"]], now=NOW)
    overall = row(store, "agent_utilization_pct", settings)
    assert (overall["value"], overall["target"], overall["status"]) == (10.0, [70.0, 85.0], "breach")  # 1 h of 10
    assert value(store, "agent_utilization_pct", settings, {"agent": "zendesk:a1"}, by=["agent"]) == 10.0
