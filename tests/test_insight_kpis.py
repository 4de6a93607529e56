"""The conversation-insight KPIs on a small hand-built store, each value worked out by hand below.

Messages carry what the sync's analysers would have stored (language, sentiment score; no body),
changes of group and priority what the connectors read. Everything sits in March 2026; "now" is
2026-04-20 (tests/kpi_fixtures.py). The negative threshold is sentiment.NEGATIVE_BELOW (-0.05).

| contact | helpdesk language | customer messages (language, score) | first reply | changes | resolved |
|---|---|---|---|---|---|
| c1 | de  | de -0.6, then de +0.4                | de (09:30) | -                                   | yes |
| c2 | -   | fr -0.3                              | en         | priority normal -> urgent, after    | yes |
| c3 | en  | en +0.5, then en -0.02 (not negative) | en        | group 1001 -> 1002 after the reply  | no  |
| c4 | es  | es, no score                         | not told   | group set to 1003 (Bezahlung Ü) at start | no |
| c5 | en  | en 0.0                               | en         | priority set to high at creation    | yes |
| c6 | en  | none (no message)                    | -          | -                                   | no  |
| f1 (freshdesk, assignments only) | en | en +0.3          | en         | assignee set                        | no  |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kpi_fixtures import rows, ts, value

from kpi_core.kpis import facts
from kpi_core.kpis.catalogue import INSIGHT_KPIS
from kpi_core.kpis.context import Context
from kpi_core.settings import InsightSettings, KpiSettings, Settings
from kpi_core.store import Store, open_store


def _contact(source: str, cid: str, day: int, language: str | None, resolved: bool = False,
             group: str | None = None) -> dict[str, Any]:
    return {"source": source, "source_id": cid, "channel": "email", "status": "resolved" if resolved else "open",
            "created_at": ts(day), "language": language, "group_id": group, "facts_from_events": True}


def _message(source: str, cid: str, role: str, at: str, language: str | None,
             sentiment: float | None = None) -> dict[str, Any]:
    return {"source": source, "source_id": f"{cid}-{role}-{at}", "contact_id": cid, "author_id": f"{role}-1",
            "author_role": role, "public": True, "created_at": at, "body": None, "language": language,
            "sentiment": sentiment}


def _change(cid: str, field: str, at: str, value: str, previous: str | None, source: str = "zendesk"
            ) -> dict[str, Any]:
    return {"source": source, "source_id": f"{cid}-{field}-{at}", "contact_id": cid, "field": field,
            "value": value, "previous": previous, "at": at}


def _resolved(source: str, cid: str, at: str) -> dict[str, Any]:
    return {"source": source, "source_id": f"{cid}-resolved", "contact_id": cid, "kind": "resolved", "at": at}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    z = "zendesk"
    records: dict[str, list[dict[str, Any]]] = {
        "groups": [{"source": z, "source_id": gid, "name": name}
                   for gid, name in (("1001", "Tier 1"), ("1002", "Tier 2"), ("1003", "Bezahlung Ü"))],
        "contacts": [_contact(z, "c1", 2, "de", resolved=True), _contact(z, "c2", 3, None, resolved=True),
                     _contact(z, "c3", 4, "en", group="1002"), _contact(z, "c4", 5, "es", group="1003"),
                     _contact(z, "c5", 6, "en", resolved=True), _contact(z, "c6", 7, "en")],
        "messages": [
            _message(z, "c1", "customer", ts(2, 9), "de", -0.6), _message(z, "c1", "agent", ts(2, 9, 30), "de"),
            _message(z, "c1", "customer", ts(2, 10), "de", 0.4),
            _message(z, "c2", "customer", ts(3, 9), "fr", -0.3), _message(z, "c2", "agent", ts(3, 10), "en"),
            _message(z, "c3", "customer", ts(4, 9), "en", 0.5), _message(z, "c3", "agent", ts(4, 10), "en"),
            _message(z, "c3", "customer", ts(4, 11), "en", -0.02),
            _message(z, "c4", "customer", ts(5, 9), "es"), _message(z, "c4", "agent", ts(5, 10), None),
            _message(z, "c5", "customer", ts(6, 9), "en", 0.0), _message(z, "c5", "agent", ts(6, 10), "en"),
        ],
        "status_events": [_resolved(z, "c1", ts(2, 12)), _resolved(z, "c2", ts(3, 12)), _resolved(z, "c5", ts(6, 12))],
        "contact_changes": [
            _change("c2", "priority", ts(3, 11), "urgent", "normal"),
            _change("c3", "group", ts(4, 9), "1001", None),  # routed at the start ...
            _change("c3", "group", ts(4, 10, 30), "1002", None),  # ... moved after the reply (previous from the lag)
            _change("c4", "group", ts(5, 9), "1003", None),
            _change("c5", "priority", ts(6), "high", None),  # opened as high: not raised
        ],
    }
    f = "freshdesk"
    other: dict[str, list[dict[str, Any]]] = {
        "contacts": [_contact(f, "f1", 8, "en")],
        "messages": [_message(f, "f1", "customer", ts(8, 9), "en", 0.3), _message(f, "f1", "agent", ts(8, 10), "en")],
        # An assignment tells nothing of groups or priorities: freshdesk's escalations stay unknown.
        "contact_changes": [_change("f1", "assignee", ts(8, 9, 30), "agent-2", None, source=f)],
    }
    opened = open_store(tmp_path_factory.mktemp("insight-kpis") / "kpi.sqlite")
    opened.write_pages(z, "test", [(records, None)])  # as a sync stores a page: contacts noted for derivation
    opened.write_pages(f, "test", [(other, None)])
    return opened


def _settings(*groups: str) -> KpiSettings:
    """The [kpis] settings as Settings hands them over, with `[insight] escalation_groups`."""
    return Settings(insight=InsightSettings(enabled=True, escalation_groups=list(groups))).kpis


def test_the_derived_contact_facts(store: Store) -> None:
    value(store, "ticket_volume")  # a computation settles the derivation first
    got = {r[0]: r[1:] for r in store.db.execute(
        "SELECT source_id, detected_language, reply_language, first_sentiment, last_sentiment, min_sentiment,"
        " regrouped_after_reply, priority_raised, groups_seen FROM contacts ORDER BY source_id")}
    assert got["c1"] == ("de", "de", -0.6, 0.4, -0.6, 0, 0, None)
    assert got["c2"] == ("fr", "en", -0.3, -0.3, -0.3, 0, 1, None)
    assert got["c3"] == ("en", "en", 0.5, -0.02, -0.02, 1, 0, '["1001","1002"]')
    assert got["c4"] == ("es", None, None, None, None, 0, 0, '["1003"]')
    assert got["c5"] == ("en", "en", 0.0, 0.0, 0.0, 0, 0, None)
    assert got["c6"] == (None, None, None, None, None, 0, 0, None)


def test_reply_language_match(store: Store) -> None:
    # Both languages known: c1 (de/de), c2 (fr detected / en), c3, c5, f1 (en/en); c4's reply could not be told,
    # c6 has none. 4 matches of 5 = 80 %.
    assert value(store, "reply_language_match_pct") == pytest.approx(80.0)


def test_negative_contacts_and_the_threshold(store: Store) -> None:
    # Scored: c1 (lowest -0.6), c2 (-0.3), c3 (-0.02: above -0.05, not negative), c5 (0.0), f1 (0.3); c4 and c6
    # have no score. Negative at any point: c1, c2 = 2 of 5 = 40 %.
    assert value(store, "negative_contact_pct") == pytest.approx(40.0)


def test_sentiment_recovery_counts_resolved_contacts_that_started_negative(store: Store) -> None:
    # Resolved in March: c1, c2, c5. Started negative: c1 (-0.6 -> +0.4, recovered), c2 (-0.3 only, not).
    # 1 of 2 = 50 %.
    assert value(store, "sentiment_recovery_pct") == pytest.approx(50.0)


def test_escalation_without_escalation_groups(store: Store) -> None:
    # Zendesk's changes are read: c1..c6 count (f1's source stored no group or priority change: unknown).
    # Escalated: c2 (raised to urgent), c3 (moved 1001 -> 1002 after the reply); c4 was routed before any reply,
    # c5 opened as high. 2 of 6 = 33.3 %. Of those, scored: c2 (negative), c3 (not): 1 of 2 = 50 %.
    assert value(store, "escalation_rate_pct", _settings()) == pytest.approx(100 * 2 / 6, abs=1e-4)
    assert value(store, "negative_escalation_pct", _settings()) == pytest.approx(50.0)


@pytest.mark.parametrize("named", ["Bezahlung Ü", "BEZAHLUNG ü", "1003", "zendesk:1003"])  # names: any case
def test_an_escalation_group_by_name_or_id(store: Store, named: str) -> None:
    # c4 was put in Bezahlung Ü (1003): with it named as an escalation tier, 3 of 6 = 50 %. c4 has no score, so the
    # negative escalations stay 1 of 2 = 50 %.
    assert value(store, "escalation_rate_pct", _settings(named)) == pytest.approx(50.0)
    assert value(store, "negative_escalation_pct", _settings(named)) == pytest.approx(50.0)
    # The contacts' current group counts too: Tier 2 is c3's (escalated already): 2 of 6.
    assert value(store, "escalation_rate_pct", _settings("Tier 2")) == pytest.approx(100 * 2 / 6, abs=1e-4)


def test_a_changed_escalation_list_or_a_renamed_group_rebuilds_the_facts(store: Store) -> None:
    before = {g: facts.fingerprint(_ctx(store, _settings(*g))) for g in ((), ("1003",), ("Escalations",))}
    assert len(set(before.values())) == 3
    # A group named in the list that a later sync brings (or renames) changes the facts too.
    store.upsert("groups", [{"source": "zendesk", "source_id": "1004", "name": "Escalations"}])
    assert facts.fingerprint(_ctx(store, _settings("Escalations"))) != before[("Escalations",)]
    assert facts.fingerprint(_ctx(store, _settings("1003"))) == before[("1003",)]
    store.db.execute("DELETE FROM groups WHERE source_id = '1004'")
    store.db.conn.commit()


def test_language_falls_back_to_the_detected_one(store: Store) -> None:
    # c2 has no helpdesk locale: its language segment is the detected French. en: c3, c5, c6, f1.
    by_language = {r["segment"]["language"]: r["value"] for r in _rows(store, "ticket_volume", ["language"])}
    assert by_language == {"de": 1, "fr": 1, "en": 4, "es": 1}
    match = {r["segment"]["language"]: r["value"] for r in _rows(store, "reply_language_match_pct", ["language"])}
    assert match["fr"] == 0.0 and match["de"] == 100.0 and match["es"] is None


def test_each_insight_kpi_is_segmentable(store: Store) -> None:
    for kpi in sorted(INSIGHT_KPIS):
        segmented = _rows(store, kpi, ["channel"])
        assert {r["segment"]["channel"] for r in segmented} == {"email"}, kpi


def _rows(store: Store, kpi: str, by: list[str]) -> list[dict[str, Any]]:
    return rows(store, _settings(), kpis=[kpi], by=by)


def _ctx(store: Store, settings: KpiSettings) -> Context:
    return Context(store, settings)


def test_the_insight_kpis_need_their_data(tmp_path: Path) -> None:
    # A store synced without insight: contacts and replies, no language or score, no change read. No value, never 0.
    bare = open_store(tmp_path / "bare.sqlite")
    bare.write_pages("zendesk", "test", [({"contacts": [_contact("zendesk", "x", 2, "en")],
                                           "messages": [_message("zendesk", "x", "customer", ts(2, 9), None),
                                                        _message("zendesk", "x", "agent", ts(2, 10), None)]}, None)])
    for kpi in sorted(INSIGHT_KPIS):
        assert value(bare, kpi) is None, kpi


def test_the_scorecard_shows_the_insight_group_only_with_insight_data(store: Store, tmp_path: Path) -> None:
    from kpi_core.kpis.scorecard import format_scorecard

    shown = format_scorecard(rows(store, _settings()))
    assert "INSIGHT" in shown and "Reply language match" in shown
    bare = open_store(tmp_path / "bare.sqlite")
    bare.write_pages("zendesk", "test", [({"contacts": [_contact("zendesk", "x", 2, "en")]}, None)])
    hidden = format_scorecard(rows(bare))
    assert "SPEED" in hidden and "INSIGHT" not in hidden
