"""The value KPIs of an order feed (catalogue 3b) on hand-built contacts, people and orders.

Customers are people with a keyed e-mail hash (written here as plain labels "HA", "HB", ...), or a requester an
explicit map names on the order (`orders.requester`). The expected values are worked out in the comments; March
2026 is the period, computed on 1 September 2026 (every 90-day window has passed) unless said otherwise.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from kpi_fixtures import Data, every_status, make_store, row, rows, ts

from kpi_core.kpis.api import compute
from kpi_core.kpis.catalogue import get
from kpi_core.kpis.context import Context
from kpi_core.kpis.engine import Value, evaluate
from kpi_core.kpis.periods import Grain, Period
from kpi_core.kpis.segments import Segmentation
from kpi_core.settings import KpiSettings
from kpi_core.store import Store

# The hand-computed cases on a SQLite store and on a PostgreSQL account (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("on_both_stores")

LATER = datetime(2026, 9, 1, 12, 0, tzinfo=timezone.utc)
EARLY = datetime(2026, 4, 2, 12, 0, tzinfo=timezone.utc)  # c7's conversion window (to 4 April) still open


def order(oid: str, created: str, total: float, customer: str | None = None, requester: str | None = None,
          refunds: list[tuple[str, float]] | None = None, cancelled: str | None = None,
          lines: list[tuple[str, int]] | None = None) -> dict[str, Any]:
    return {"source": "shop", "source_id": oid, "customer_key": customer, "requester": requester,
            "created_at": created, "updated_at": created, "cancelled_at": cancelled, "currency": "EUR",
            "total": total, "refunds": [{"at": at, "amount": amount} for at, amount in refunds or []],
            "lines": [{"sku": sku, "quantity": q} for sku, q in lines or []]}


def day(month: int, d: int, year: int = 2026) -> str:
    return datetime(year, month, d, 9, 0, tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def scenario() -> tuple[Data, list[dict[str, Any]]]:
    data = Data()
    for rid, key in (("ra", "HA"), ("rb", "HB"), ("rc", "HC"), ("rd", "HD"), ("re", "HE"), ("rv", "HV")):
        data.people.append({"source": "zendesk", "source_id": rid, "role": "customer", "email_hash": key})
    data.people.append({"source": "zendesk", "source_id": "rm", "role": "customer"})  # no hash: mapped by id
    data.people.append({"source": "zendesk", "source_id": "rx", "role": "customer"})  # unknown to the shop
    # Every contact is inbound, resolved an hour (c1: two hours) after creation at 09:00.
    data.contact("c1", ts(2), requester_id="ra", reply=5, resolved=2)
    data.contact("c2", ts(3), requester_id="rb", reply=5, resolved=1)
    data.contact("c3", ts(4), requester_id="rc", reply=5, resolved=1)
    data.contact("c4", ts(5), requester_id="rd", reply=5, resolved=1)
    data.contact("c5", ts(6), requester_id="rm", reply=5, resolved=1)
    data.contact("c6", ts(7), requester_id="rx", reply=5, resolved=1)
    data.contact("c7", ts(28), requester_id="re", reply=5, resolved=1)
    # An outbound contact nobody answered: no value-KPI window starts with it (catalogue 2c).
    data.contact("c8", ts(15), requester_id="ra", is_outbound=True)
    data.contact("c10", day(1, 15), requester_id="rv", reply=5, resolved=1)  # January: HV's contact
    orders = [
        order("o0", day(11, 1, 2025), 10, "HZ"),  # the feed's start: contacts from 30 January count
        order("o0b", day(12, 1, 2025), 20, "HZ"),
        order("a1", day(1, 10), 100, "HA"),
        order("a2", day(3, 20), 40, "HA", refunds=[(day(3, 25), 15)], lines=[("SKU-MUG", 1)]),
        order("a3", day(5, 1), 60, "HA", cancelled=day(5, 2)),
        order("b_1", day(3, 6), 80, "HB"),
        order("x1", day(3, 10), 55, "HB", cancelled=day(3, 11)),
        order("d1", day(2, 1), 30, "HD", refunds=[(day(3, 10), 30)], lines=[("SKU-LAMP", 2)]),
        order("d2", day(4, 25), 70, "HD"),
        order("m1", day(3, 8), 25, requester="zendesk:rm"),
        order("e1", day(3, 30), 20, "HE", refunds=[(day(4, 5), 5)], lines=[("SKU-MUG", 1)]),
        order("b1", day(3, 5), 50, "HY"),
        order("b3", day(3, 20), 50, "HY"),
        order("b2", day(4, 10), 50, "HY"),
        order("b4", day(3, 8), 50, "HW"),
        order("v1", day(3, 10), 50, "HV"),
    ]
    return data, orders


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    data, orders = scenario()
    built = make_store(tmp_path_factory.mktemp("value"), data)
    built.upsert("orders", orders)
    built.db.conn.commit()
    return built


def test_a_customer_named_by_hash_and_by_map_is_one_customer_in_the_baseline(tmp_path: Path) -> None:
    # HQ is requester rq (a contact last September, long before the window). Their shop order q1 (5 March)
    # carries the hash, their imported order q2 (20 March) a map naming rq: one customer, whose first March
    # order q1 is followed by q2 within 90 days -> baseline 1 / 1 = 100 %. Counted as two customers it was 0 / 2.
    data = Data()
    data.people.append({"source": "zendesk", "source_id": "rq", "role": "customer", "email_hash": "HQ"})
    data.contact("c20", day(9, 1, 2025), requester_id="rq", reply=5, resolved=1)
    built = make_store(tmp_path, data)
    try:
        built.upsert("orders", [order("q0", day(8, 1, 2025), 10, "HZ"), order("q1", day(3, 5), 40, "HQ"),
                                order("q2", day(3, 20), 60, requester="zendesk:rq")])
        built.db.conn.commit()
        lift = row(built, "repurchase_lift_90d_pp", now=LATER)
    finally:
        built.close()
    assert lift["denominator"] == 100.0


def test_consultation_conversion_counts_pre_sales_contacts_once_their_window_passed(store: Store) -> None:
    # Pre-sales: the shop knows the customer and they had no order before the contact: c2 (HB), c3 (HC, no
    # orders at all), c5 (mapped requester), c7 (HE). c1 and c4 ordered before; c6 is unknown to the shop; c8
    # is an unanswered outbound contact. Converted within 7 days: c2 (b_1 after 3 days; x1 is cancelled),
    # c5 (m1 after 2 days), c7 (e1 after 2 days) -> 3 / 4.
    found = row(store, "consultation_conversion_pct", now=LATER)
    assert (found["value"], found["numerator"], found["denominator"]) == (75.0, 3, 4)
    # On 2 April c7's window (to 4 April) has not passed: it counts in neither -> 2 / 3.
    early = fresh(store, "consultation_conversion_pct", EARLY)
    assert (early.numerator, early.denominator) == (2, 3)


def test_repurchase_and_its_lift_over_the_baseline(store: Store) -> None:
    # Resolved contacts of customers who ordered before: c1 (HA, resolved 2 March 11:00) and c4 (HD, resolved
    # 5 March 10:00). c1's next order a2 (20 March) is within 30 days; c4's d2 (25 April) within 90 only.
    assert value(store, "repurchase_30d_pct") == 50.0
    assert value(store, "repurchase_90d_pct") == 100.0
    # Baseline: March orders of customers with no contact in the 90 days around them: HY (first such order b1,
    # followed by b3 within 90 days) and HW (b4, never followed); HV's v1 has c10 54 days before -> 1 / 2.
    lift = row(store, "repurchase_lift_90d_pp", now=LATER)
    assert (lift["value"], lift["numerator"], lift["denominator"]) == (50.0, 100.0, 50.0)
    # Segmented, the baseline stays the unsegmented one.
    by_channel = rows(store, kpis=["repurchase_lift_90d_pp"], by=["channel"], now=LATER)
    assert [(r["segment"], r["value"]) for r in by_channel if r["segment"]] == [({"channel": "email"}, 50.0)]
    # On 2 April c1's 30-day window (to 1 April 11:00) passed, its 90-day one not: 90 days has no data.
    assert fresh(store, "repurchase_30d_pct", EARLY).denominator == 1
    assert fresh(store, "repurchase_90d_pct", EARLY).value is None


def test_clv_increment_nets_refunds_at_their_own_date(store: Store) -> None:
    # Resolved contacts of matched customers (value after the resolution - value before the creation, 90 days):
    # c1: before a1 100; after a2 40 - its refund 15 (a3 cancelled) = 25 -> -75
    # c2: 0 -> b_1 80 = +80;  c4: before d1 30; after d1's refund -30 (10 March) + d2 70 = 40 -> +10
    # c5: 0 -> m1 25 = +25;   c7: 0 -> e1 20 - its refund 5 = 15 -> +15;   c3 has no orders: not matched.
    found = row(store, "clv_increment", now=LATER)
    assert found["value"] == pytest.approx((-75 + 80 + 10 + 25 + 15) / 5)
    assert found["n"] == 5


def test_orders_and_support_influenced_revenue_by_order_date(store: Store) -> None:
    # March orders not cancelled: a2, b_1, m1, e1, b1, b3, b4, v1 = 8 (x1 cancelled).
    assert value(store, "orders", now=LATER) == 8
    # Placed within 7 days after a contact of the same customer: b_1 (c2) 80, m1 (c5, by requester) 25,
    # e1 (c7) 20 = 125; a2 follows c1 by 18 days and only the unanswered outbound c8 by 5.
    assert value(store, "support_influenced_revenue", now=LATER) == 125.0
    # April: no influenced order placed, e1's refund of 5 counts at its own date -> -5.
    april = rows(store, kpis=["support_influenced_revenue", "orders"], since=date(2026, 4, 1),
                 until=date(2026, 5, 1), now=LATER)
    assert {r["kpi"]: r["value"] for r in april if not r["segment"]} == {"support_influenced_revenue": -5.0,
                                                                       "orders": 2}
    # Orders carry none of the contacts' segments.
    assert not [r for r in rows(store, kpis=["orders"], by=["channel"], now=LATER) if r["segment"]]


def test_refund_contact_rate(store: Store) -> None:
    # Contacts of customers with an order before them: c1 (HA: a2's refund 23 days after, too far) and c4 (HD:
    # d1's refund 5 days after) -> 1 / 2. c8 (outbound, unanswered) would have counted: left out.
    found = row(store, "refund_contact_rate_pct", now=LATER)
    assert (found["value"], found["numerator"], found["denominator"]) == (50.0, 1, 2)


def test_interactions_per_order_uses_the_feed_when_it_covers_the_period(store: Store) -> None:
    # March: 8 contacts created (c1-c8) over the feed's 8 orders.
    found = row(store, "interactions_per_order", now=LATER)
    assert (found["value"], found["denominator"]) == (1.0, 8)


def fresh(store: Store, kpi: str, now: datetime) -> Value:
    """March's unsegmented value computed at `now` (not stored: the module's store keeps September's)."""
    ctx = Context(store, every_status(), now=now)
    march = Period(date(2026, 3, 1), date(2026, 4, 1), Grain.MONTH)
    found = [v for v in evaluate(ctx, [march], [Segmentation(())], [get(kpi)]) if not v.segment]
    assert len(found) == 1
    return found[0]


def value(store: Store, kpi: str, now: datetime = LATER) -> Any:
    return row(store, kpi, now=now)["value"]


def test_the_feed_start_rule_and_incremental_orders(tmp_path: Path) -> None:
    # One pre-sales contact (c2, 3 March) converted by b_1 (6 March). With b_1 the feed's earliest order,
    # c2 was created before the feed had 90 days of orders: left out -> no data.
    data = Data()
    data.people.append({"source": "zendesk", "source_id": "rb", "role": "customer", "email_hash": "HB"})
    data.contact("c2", ts(3), requester_id="rb", reply=5, resolved=1)
    store = make_store(tmp_path, data)
    store.upsert("orders", [order("b_1", day(3, 6), 80, "HB")])
    store.db.conn.commit()
    settings = _settings()
    compute(store, settings, date(2026, 3, 1), date(2026, 4, 1), grains=["month"], segments=[[]], now=LATER)
    assert _stored(store, "consultation_conversion_pct") is None
    # An older order arrives (another customer, 1 November 2025): the feed now covers c2 -> 1 / 1, and the
    # value stored by an incremental compute is the one a full one gives.
    store.upsert("orders", [order("o0", day(11, 1, 2025), 10, "HZ")])
    store.db.conn.commit()
    compute(store, settings, date(2026, 3, 1), date(2026, 4, 1), grains=["month"], segments=[[]], now=LATER)
    assert _stored(store, "consultation_conversion_pct") == 100.0
    incremental = _all_stored(store)
    compute(store, settings, date(2026, 3, 1), date(2026, 4, 1), grains=["month"], segments=[[]], now=LATER,
            full=True)
    assert _all_stored(store) == incremental


def _settings() -> KpiSettings:
    return KpiSettings(min_n=1)


def _stored(store: Store, kpi: str) -> Any:
    found = store.db.conn.execute("SELECT value FROM kpi_values WHERE kpi = ? AND grain = 'month' AND by_key = ''"
                                  " AND period_start = '2026-03-01'", [kpi]).fetchall()
    assert len(found) == 1, found
    return found[0][0]


def _all_stored(store: Store) -> dict[str, Any]:
    return {k: v for k, v in store.db.conn.execute(
        "SELECT kpi, value FROM kpi_values WHERE grain = 'month' AND by_key = '' AND period_start = '2026-03-01'")}





def test_writeback_order_metrics_per_customer(store: Store) -> None:
    from kpi_core.writeback.metrics import context, for_source

    # On 1 May 2026 (90 days back: from 31 January 09:00 exclusive):
    # ra (HA): a1 (10 Jan) is too old; a2 40 (20 Mar) minus its refund 15 (25 Mar); a3 cancelled -> 1 order, 25,
    #          latest order 20 Mar (1 May 12:00 - 20 Mar 09:00 = 42 days 3 h -> 42 days ago).
    # rd (HD): d1 30 (1 Feb) and its refund -30 (10 Mar), d2 70 (25 Apr) -> 2 orders, 70, 6 days ago.
    # rm (mapped requester): m1 25 -> 1 order, 25. rc: no order -> 0, no latest order.
    ctx = context(store, every_status(), datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc))
    found = for_source(ctx, "zendesk").requesters
    picked = {r: (found[r]["orders_90d"], found[r]["clv_90d"], found[r]["last_order_days_ago"])
              for r in ("ra", "rd", "rm", "rc")}
    assert picked == {"ra": (1, 25, 42), "rd": (2, 70, 6), "rm": (1, 25, 54), "rc": (0, 0, None)}


def test_scorecard_shows_the_value_group_only_with_an_order_feed(store: Store, tmp_path: Path) -> None:
    from kpi_core.kpis.scorecard import format_scorecard

    with_feed = format_scorecard(rows(store, now=LATER))
    assert "VALUE" in with_feed and "Consultation conversion" in with_feed and "75.0 %" in with_feed
    data, _ = scenario()
    without = format_scorecard(rows(make_store(tmp_path, data), now=LATER))
    assert "VALUE" not in without and "Consultation conversion" not in without


def test_top_refunded_skus_with_the_contacts_around_them(store: Store) -> None:
    from kpi_core.kpis.reasons import top_refunded_skus
    from kpi_core.kpis.scorecard import format_refunded_skus

    # Refunds dated in March: d1's (10 March; SKU-LAMP x2; HD's c4 was created 5 days before) and a2's (25 March;
    # SKU-MUG x1; HA's c1 is 23 days away, c8 an unanswered outbound contact). e1's refund is April's.
    found = top_refunded_skus(store, every_status(), date(2026, 3, 1), date(2026, 4, 1), now=LATER)
    assert [(r["sku"], r["refunds"], r["quantity"], r["contacts"], r["contact_ids"], r["refunds_with_contact_pct"])
            for r in found] == [("SKU-LAMP", 1, 2, 1, ["zendesk:c4"], 100.0), ("SKU-MUG", 1, 1, 0, [], 0.0)]
    assert "SKU-LAMP" in format_refunded_skus(found)
    april = top_refunded_skus(store, every_status(), date(2026, 4, 1), date(2026, 5, 1), now=LATER)
    assert [(r["sku"], r["contacts"]) for r in april] == [("SKU-MUG", 1)]  # c7 (28 March), 8 days before


def test_reasons_command_lists_refunded_skus(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    import json

    from kpi_core import cli

    path = store.db.conn.execute("PRAGMA database_list").fetchone()[2]
    config = tmp_path / "helpdesk-kpi.toml"
    config.write_text(f'[store]\npath = "{path}"\n')
    config.chmod(0o600)
    assert cli.main(["reasons", "--config", str(config), "--since", "2026-04-01", "--until", "2026-05-01",
                     "--refunded-skus", "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [(r["sku"], r["refunds"], r["contact_ids"]) for r in found] == [("SKU-MUG", 1, ["zendesk:c7"])]
    assert cli.main(["reasons", "--config", str(config), "--since", "2026-03-01", "--until", "2026-04-01"]) == 0
    text = capsys.readouterr().out
    assert "Top refunded SKUs" in text and "SKU-LAMP" in text


def test_without_a_feed_orders_is_the_business_input_and_revenue_has_no_data(tmp_path: Path) -> None:
    from kpi_core.settings import BusinessInputSettings

    data, _ = scenario()
    store = make_store(tmp_path, data)
    given = KpiSettings(inputs=[BusinessInputSettings(kind="orders", start=date(2026, 3, 1), end=date(2026, 4, 1),
                                                      value=16)], min_n=1)
    compute(store, given, date(2026, 3, 1), date(2026, 4, 1), grains=["month"], segments=[[]], now=LATER)
    assert row(store, "orders", given, now=LATER)["value"] == 16
    # 8 contacts created in March (c1-c8) over the 16 orders of the input.
    assert row(store, "interactions_per_order", given, now=LATER)["value"] == 0.5
    assert row(store, "support_influenced_revenue", given, now=LATER)["status"] == "no_data"


def test_a_store_without_orders_gets_the_value_facts_a_customer_without_orders_has(tmp_path: Path) -> None:
    """Without any order the facts skip the per-contact look-up; their value columns are those of the full look-up
    for customers who have no order (here: after an unrelated customer's order arrives and facts are rebuilt)."""
    data, _ = scenario()
    store = data.write(make_store(tmp_path))
    value_columns = "source_id, customer, shop_known, shop_matched, ordered_before, next_order_epoch, reorder_epoch," \
                    " value_before, value_after, refund_gap_s"

    def facts() -> list[tuple[Any, ...]]:
        return store.db.conn.execute(f"SELECT {value_columns} FROM kpi_facts ORDER BY source_id").fetchall()

    compute(store, KpiSettings(), now=LATER)
    without = facts()
    store.upsert("orders", [order("stranger", day(2, 1), 10.0, customer="H-unrelated")])
    compute(store, KpiSettings(), now=LATER, full=True)
    assert facts() == without
