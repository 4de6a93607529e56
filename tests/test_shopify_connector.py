"""The Shopify order connector over real HTTP against its sandbox fake, into a real SQLite store, through the one
sync path: incremental reads, resuming after SIGKILL, the cost-based throttling, a bulk operation, a rejected
token, the customer match (keyed e-mail hash, customer-id map) and nothing personal in the store's bytes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from waiting import kill_once

from connectors.sandbox import Sandbox
from connectors.sandbox.world import World
from connectors.shopify import ShopifyConnector, ShopifySettings
from connectors.shopify.fake import FakeShopify
from kpi_core.model import email_hash
from kpi_core.settings import PrivacySettings
from kpi_core.store import Store, store_at
from kpi_core.sync import SourceResult, rewind_source, sync_source

HASH_KEY = "shop-test-key"
PAGE = 10


@pytest.fixture
def fake(make_sandbox: Callable[..., Sandbox]) -> FakeShopify:
    shop = make_sandbox(seed=11, tickets=60, names=("shopify",))["shopify"]
    assert isinstance(shop, FakeShopify)
    return shop


def connector(fake: FakeShopify, hash_key: str | None = HASH_KEY, **overrides: Any) -> ShopifyConnector:
    settings = ShopifySettings(**{**fake.connector_settings(), "page_size": PAGE, **overrides})
    settings.with_privacy(PrivacySettings(hash_key=hash_key))
    return ShopifyConnector(settings)


def sync(store: Store, fake: FakeShopify, **overrides: Any) -> SourceResult:
    built = connector(fake, **overrides)
    try:
        return sync_source(store, built)
    finally:
        built.close()


def expected(world: World) -> dict[str, tuple[Any, ...]]:
    """Each world order as the store must hold it, worked out from the world alone."""
    def iso(epoch: int | None) -> str | None:
        return None if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))

    return {str(o.id): (email_hash(world.customer(o).email, HASH_KEY.encode()), iso(o.created_at),
                        iso(o.cancelled_at), "EUR", round(o.total, 2),
                        [{"amount": r.amount, "at": iso(r.at)} for r in o.refunds],
                        [{"quantity": q, "sku": s} for s, q in o.lines])
            for o in world.orders.values()}


def stored(db: Store | sqlite3.Connection) -> dict[str, tuple[Any, ...]]:
    execute = db.db.execute if isinstance(db, Store) else db.execute
    return {r[0]: (r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), json.loads(r[7]))
            for r in execute("SELECT source_id, customer_key, created_at, cancelled_at, currency, total, refunds,"
                             " lines FROM orders WHERE source = 'shopify'")}


def graphql_calls(fake: FakeShopify, root: str) -> list[Any]:
    return [c for c in fake.calls("POST") if root in str((c.body or {}).get("query"))]


def test_a_second_sync_reads_only_the_changed_orders(fake: FakeShopify, store: Store) -> None:
    first = sync(store, fake)
    assert first.ok, first.error
    assert stored(store) == expected(fake.world)
    assert first.stored_text() == f"; {len(fake.world.orders):,} orders stored"  # what the summary lines say
    assert len(fake.world.orders) > 3 * PAGE, "several pages"
    assert not graphql_calls(fake, "bulkOperationRunQuery"), "a small shop is read by paged queries"
    assert store.get_cursor("shopify", "orders") == max(
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(o.updated_at)) for o in fake.world.orders.values())

    changed = set(map(str, fake.world.change_orders(3)))  # three refunds, three new orders
    fake.clear_log()
    second = sync(store, fake)
    assert second.ok, second.error
    assert second.records <= len(changed) + 1  # the changes, and the one at the bookmark's second again
    [query] = graphql_calls(fake, "orders(")
    assert query.body["variables"]["query"].startswith("updated_at:>=")
    assert stored(store) == expected(fake.world)
    assert changed <= set(stored(store))


def test_the_nightly_rewind_brings_back_a_recent_order_lost_from_the_store(fake: FakeShopify, store: Store) -> None:
    assert sync(store, fake).ok
    lost = sorted(fake.world.orders.values(), key=lambda o: (o.updated_at, o.id))[-4]  # not the bookmark's own
    with store.db.conn:
        store.db.execute("DELETE FROM orders WHERE source_id = ?", [str(lost.id)])
    assert sync(store, fake).ok
    assert str(lost.id) not in stored(store), "a plain incremental sync does not re-read it"
    built = connector(fake)
    try:
        assert rewind_source(store, built, datetime.fromtimestamp(lost.updated_at, tz=timezone.utc))
        assert sync_source(store, built).ok
    finally:
        built.close()
    assert stored(store) == expected(fake.world)


KILLABLE_SYNC = """
import json, sys
import kpi_core.sync
from connectors.shopify import ShopifyConnector, ShopifySettings
from kpi_core.settings import PrivacySettings
from kpi_core.store import open_store
settings, path, key = sys.argv[1:4]
kpi_core.sync.BATCH_RECORDS = 1  # a transaction per page: the kill lands between stored pages
parsed = ShopifySettings(**json.loads(settings))
parsed.with_privacy(PrivacySettings(hash_key=key))
kpi_core.sync.sync_source(open_store(path), ShopifyConnector(parsed))
"""


def stored_orders(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM orders").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # not created yet, or mid-migration


def test_a_sync_killed_mid_way_resumes_to_the_same_rows(fake: FakeShopify, tmp_path: Path) -> None:
    with store_at(tmp_path / "reference.sqlite") as ref:
        uninterrupted = sync(ref, fake, page_size=4)
        assert uninterrupted.ok, uninterrupted.error
        want = stored(ref)
    killed = tmp_path / "killed.sqlite"
    fake.slow(0.05, times=100_000, path="graphql")  # pace the pages so that the kill lands between them
    settings = json.dumps({**fake.connector_settings(), "page_size": 4})
    child = subprocess.Popen([sys.executable, "-c", KILLABLE_SYNC, settings, str(killed), HASH_KEY])
    kill_once(child, lambda: stored_orders(killed))
    fake.faults.clear()
    with store_at(killed) as store:
        assert [r[0] for r in store.db.execute("SELECT status FROM sync_runs")] == ["running"]
        assert 0 < store.count("orders") < len(want), "killed mid-way through the orders"
        assert store.get_cursor("shopify", "orders") is not None, "each stored page moved the bookmark with it"
        resumed = sync(store, fake, page_size=4)
        assert resumed.ok, resumed.error
        assert resumed.api_calls < uninterrupted.api_calls, "the resumed sync carries on from its bookmark"
        assert stored(store) == want


def test_the_cost_budget_is_waited_for_and_a_throttled_query_retried_without_a_storm(
        fake: FakeShopify, store: Store) -> None:
    # A bucket holding about one page's cost (2 + 2 per order asked): every page waits for the refill.
    fake.cost_budget(maximum=30, restore_rate=300)
    fake.bucket.available = 0  # spent by someone else: the connector's first query is THROTTLED
    built = connector(fake)
    try:
        result = sync_source(store, built)
        waited, throttled = built.graphql.waited, built.call_counts.throttled
    finally:
        built.close()
    assert result.ok, result.error
    assert fake.throttled == 1, "the first answer taught the connector the budget: no THROTTLED after it"
    assert throttled == 1, "the connector's counts show it (the daemon's metrics read them)"
    assert [c.status for c in fake.calls()] == [200] * len(fake.calls()), "no 429, no error status"
    assert waited > 0.05, "it waited for the budget to refill"
    assert stored(store) == expected(fake.world)


def test_a_first_sync_in_bulk_reads_the_jsonl_file_and_then_goes_incremental(fake: FakeShopify, store: Store) -> None:
    result = sync(store, fake, bulk_threshold=5)  # the shop holds more than 5 orders: a bulk operation
    assert result.ok, result.error
    assert len(graphql_calls(fake, "bulkOperationRunQuery")) == 1
    polls = graphql_calls(fake, "currentBulkOperation")
    assert len(polls) >= 2, "CREATED -> RUNNING -> COMPLETED takes polls"
    assert [c.status for c in fake.calls("GET", r"^/_bulk/")] == [200]
    assert not graphql_calls(fake, "orders(first"), "no paged query in a bulk sync"
    assert stored(store) == expected(fake.world)
    [operation] = fake.bulk_operations.values()
    assert store.get_cursor("shopify", "orders") == operation["createdAt"]

    fake.world.change_orders(2)
    fake.clear_log()
    again = sync(store, fake, bulk_threshold=5)
    assert again.ok, again.error
    assert not graphql_calls(fake, "bulkOperationRunQuery"), "only a first sync runs in bulk"
    assert stored(store) == expected(fake.world)


def test_a_rejected_token_fails_once_with_a_sentence_naming_the_shop(fake: FakeShopify, store: Store) -> None:
    result = sync(store, fake, access_token="shpat_wrong")
    assert not result.ok
    assert [c.status for c in fake.calls()] == [401], "tried once, not retried"
    assert result.error is not None
    assert "sandbox-shop.myshopify.com" in result.error and "access token" in result.error
    assert "shpat_wrong" not in result.error and "Error" not in result.error
    assert store.count("orders") == 0


def test_without_a_hash_key_orders_are_kept_unmatched_and_the_admin_told(fake: FakeShopify, store: Store,
                                                                          tmp_path: Path) -> None:
    order = next(iter(fake.world.orders.values()))
    shop_id = f"{order.customer_source[0]}{order.customer_id}"  # the fake's customer id
    mapping = tmp_path / "customers.csv"
    mapping.write_text(f"shop_customer_id,requester\n{shop_id},{order.customer_source}:{order.customer_id}\n")
    result = sync(store, fake, hash_key=None, customer_map=str(mapping))
    assert result.ok, result.error
    assert any("hash_key is not set" in w for w in result.warnings), result.warnings
    assert store.db.execute("SELECT count(*) FROM orders WHERE customer_key IS NOT NULL").fetchone()[0] == 0
    requesters = {r[0] for r in store.db.execute("SELECT requester FROM orders WHERE shop_customer_id = ?",
                                                 [shop_id])}
    assert requesters == {f"{order.customer_source}:{order.customer_id}"}


def test_no_name_address_email_or_phone_of_a_customer_reaches_the_store(fake: FakeShopify, tmp_path: Path) -> None:
    path = tmp_path / "kpi.sqlite"
    with store_at(path) as store:
        assert sync(store, fake, bulk_threshold=0).ok  # the bulk file's objects ...
        fake.world.change_orders(2)
        assert sync(store, fake).ok  # ... and the paged nodes
        assert store.count("orders") == len(fake.world.orders)
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("kpi.sqlite"))
    world = fake.world
    personal = {s for o in world.orders.values() for p in [world.customer(o)] for s in (p.name, p.email, p.phone)
                if s}
    personal |= {f"{o.id} Sandbox Street" for o in world.orders.values()}
    found = sorted(s for s in personal if s.encode() in data)
    assert not found, found
