"""Reads a Shopify shop's orders through the Admin GraphQL API, incrementally by `updated_at`.

One stream, `orders`. An incremental read asks for the orders updated at or after the bookmark,
sorted by UPDATED_AT, page by page (cursor pagination); each page's bookmark is the `updatedAt` of
its last order, stored with the page, so a sync killed mid-way resumes where its last stored page
ended (an order read twice is upserted). A first sync of a shop with at least `bulk_threshold`
orders runs one bulk operation instead: Shopify writes every order into a JSONL file, which is read
in pages; its bookmark, the operation's start, is stored with the last page only.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

import requests

from connectors.base import (
    CheckResult,
    ConfigError,
    MalformedResponse,
    Page,
    StreamSpec,
    SyncError,
)
from connectors.http import ClientOwner, HttpClient
from connectors.shopify.graphql import SOURCE, GraphqlClient
from connectors.shopify.normalize import order_record
from connectors.shopify.settings import ShopifySettings
from kpi_core.model import RecordError, iso_utc

log = logging.getLogger(__name__)

ORDERS = StreamSpec("orders", ("orders",), "orders by updated_at (GraphQL), a bulk operation on a large first sync")
PAGE_SIZE = 100  # orders per query: Shopify's cap is 250, but each order's line items add to the cost
LINE_ITEMS = 100  # line items read per order in paged queries

ORDER_FIELDS = """id createdAt updatedAt cancelledAt currencyCode
      totalPriceSet { shopMoney { amount currencyCode } }
      customer { id email }
      refunds { createdAt totalRefundedSet { shopMoney { amount currencyCode } } }"""

ORDERS_QUERY = f"""query Orders($first: Int!, $after: String, $query: String) {{
  orders(first: $first, after: $after, sortKey: UPDATED_AT, query: $query) {{
    edges {{ cursor node {{ {ORDER_FIELDS}
      lineItems(first: {LINE_ITEMS}) {{ edges {{ node {{ sku quantity }} }} pageInfo {{ hasNextPage }} }} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}"""

COUNT_QUERY = """query OrdersCount($query: String, $limit: Int) {
  ordersCount(query: $query, limit: $limit) { count precision }
}"""

SHOP_QUERY = "query Shop { shop { name myshopifyDomain currencyCode } }"

BULK_RUN = """mutation RunBulk($query: String!) {
  bulkOperationRunQuery(query: $query) { bulkOperation { id status } userErrors { field message } }
}"""

BULK_POLL = """query CurrentBulk {
  currentBulkOperation { id status errorCode createdAt completedAt objectCount url }
}"""


def bulk_query(search: str) -> str:
    """The query a bulk operation runs: every order matching `search`, line items as child lines."""
    return (f'{{ orders(query: "{search}") {{ edges {{ node {{ {ORDER_FIELDS}'
            " lineItems { edges { node { sku quantity } } } } } } }")


class ShopifyConnector(ClientOwner):
    """A shop's orders as `orders` records."""

    name: ClassVar[str] = "shopify"

    def __init__(self, settings: ShopifySettings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if settings.access_token is None or not settings.access_token.get_secret_value():
            raise ConfigError("shopify: set connectors.shopify.access_token"
                              " (HELPDESK_KPI_CONNECTORS__SHOPIFY__ACCESS_TOKEN)")
        base_url = settings.base_url or f"https://{settings.shop}"
        self.client = HttpClient(SOURCE, base_url, headers={"X-Shopify-Access-Token":
                                                            settings.access_token.get_secret_value()},
                                 timeout=settings.timeout_seconds, max_attempts=settings.max_attempts, sleep=sleep)
        self.settings = settings
        self.shop = settings.shop_name
        self.graphql = GraphqlClient(self.client, settings.api_version, self.shop, sleep=self.client.sleep)
        self.page_size = min(settings.page_size or PAGE_SIZE, 250)
        self.start = f"{settings.start_date.isoformat()}T00:00:00Z"
        privacy = settings.privacy
        self.hash_key = privacy.hash_key_bytes() if privacy is not None else None
        self.requester_of = read_customer_map(settings)
        self._sleep = self.client.sleep
        self._warned_unmatched = False

    # --- the Connector protocol ---------------------------------------------------------

    def streams(self) -> Sequence[StreamSpec]:
        return (ORDERS,)

    def read(self, stream: StreamSpec, cursor: str | None, full: bool = False) -> Iterator[Page]:
        if stream.name != ORDERS.name:
            raise SyncError(f"shopify: unknown stream {stream.name!r}")
        since = self.start if full or not cursor else cursor
        if (full or not cursor) and self._bulk_wanted(since):
            yield from self._read_bulk(since)
        else:
            yield from self._read_pages(since)

    def rewind_cursor(self, stream: StreamSpec, cursor: str | None, since: datetime) -> str | None:
        """A bookmark that re-reads every order changed at or after `since` (the nightly reconciliation)."""
        wanted = since.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cursor if cursor is None or cursor <= wanted else wanted

    def check(self) -> CheckResult:
        host = self.client.base_url.split("://", 1)[-1]
        try:
            data = self.graphql.query("shop", SHOP_QUERY)
        except SyncError as exc:
            return CheckResult(host, problem=str(exc))
        shop = data.get("shop") or {}
        return CheckResult(host, identity=f"shop {shop.get('myshopifyDomain') or self.shop}",
                           warning=None if self.hash_key else _NO_KEY)

    # --- paged queries ------------------------------------------------------------------

    def _read_pages(self, since: str) -> Iterator[Page]:
        after: str | None = None
        search = f"updated_at:>='{since}'"
        while True:
            data = self.graphql.query("orders", ORDERS_QUERY,
                                      {"first": self.page_size, "after": after, "query": search})
            orders = data.get("orders")
            if not isinstance(orders, Mapping) or not isinstance(orders.get("edges"), list):
                raise MalformedResponse(f"shopify: {self.shop}: the orders answer has no edges")
            page = Page()
            last = since
            for edge in orders["edges"]:
                node = edge.get("node") or {}
                items = node.get("lineItems") or {}
                lines = [e.get("node") or {} for e in items.get("edges") or []]
                if (items.get("pageInfo") or {}).get("hasNextPage"):
                    page.warn(f"shopify: order {node.get('id')} has more than {LINE_ITEMS} line items;"
                              f" the first {LINE_ITEMS} are kept")
                self._add(page, node, lines)
                last = max(last, iso_utc(node.get("updatedAt")) or last)
            info = orders.get("pageInfo") or {}
            page.cursor = last
            self._warn_unmatched(page)
            yield page
            after = info.get("endCursor")
            if not info.get("hasNextPage") or not after:
                return

    def _add(self, page: Page, node: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> None:
        try:
            page.add("orders", order_record(node, lines, self.hash_key, self.requester_of))
        except (RecordError, KeyError, TypeError, ValueError) as exc:
            page.reject(str(node.get("id")), f"shopify: order cannot be read: {exc}")

    def _warn_unmatched(self, page: Page) -> None:
        if self.hash_key is None and not self._warned_unmatched and page.size():
            self._warned_unmatched = True
            page.warn(_NO_KEY)

    # --- the bulk operation of a large first sync ---------------------------------------

    def _bulk_wanted(self, since: str) -> bool:
        if self.settings.bulk_threshold == 0:
            return True
        data = self.graphql.query("count", COUNT_QUERY,
                                  {"query": f"updated_at:>='{since}'", "limit": self.settings.bulk_threshold})
        count = (data.get("ordersCount") or {}).get("count")
        return isinstance(count, int) and count >= self.settings.bulk_threshold

    def _read_bulk(self, since: str) -> Iterator[Page]:
        operation = self._run_bulk(since)
        url = operation.get("url")
        started = iso_utc(operation.get("createdAt")) or since
        if not url:  # Shopify leaves `url` null when nothing matched
            yield Page(cursor=max(since, started))
            return
        page = Page()
        for node, lines in _bulk_orders(self._download(str(url))):
            self._add(page, node, lines)
            if page.size() >= self.page_size * 10:
                self._warn_unmatched(page)
                yield page  # no bookmark: the file is in no order of change time
                page = Page()
        page.cursor = max(since, started)  # every order changed after the operation started is read next time
        self._warn_unmatched(page)
        yield page

    def _run_bulk(self, since: str) -> dict[str, Any]:
        search = f"updated_at:>='{since}'"
        data = self.graphql.query("bulk_run", BULK_RUN, {"query": bulk_query(search)}, mutation=True)
        run = data.get("bulkOperationRunQuery") or {}
        problems = run.get("userErrors") or []
        if problems:
            # One bulk query at a time per app and shop: one left running (by a sync that was killed) is awaited.
            current = self._poll()
            if current.get("status") not in ("CREATED", "RUNNING", "COMPLETED"):
                raise SyncError(f"shopify: {self.shop}: the bulk operation was refused: "
                                + "; ".join(str(p.get("message")) for p in problems))
        while True:
            current = self._poll()
            status = current.get("status")
            if status == "COMPLETED":
                return current
            if status not in ("CREATED", "RUNNING"):
                raise SyncError(f"shopify: {self.shop}: the bulk operation ended {status}"
                                f" ({current.get('errorCode') or 'no error code'})")
            self._sleep(self.settings.bulk_poll_seconds)

    def _poll(self) -> dict[str, Any]:
        current = self.graphql.query("bulk_poll", BULK_POLL).get("currentBulkOperation")
        if not isinstance(current, dict):
            raise SyncError(f"shopify: {self.shop}: no bulk operation is running")
        return current

    def _download(self, url: str) -> Iterator[str]:
        # The file lives on a signed storage URL: no shop token goes with it.
        try:
            with requests.get(url, stream=True, timeout=self.settings.timeout_seconds) as resp:
                self.client.counts.calls += 1
                if resp.status_code != 200:
                    raise SyncError(f"shopify: {self.shop}: the bulk operation's file answered {resp.status_code}")
                for line in resp.iter_lines():
                    if line:
                        yield line.decode("utf-8")
        except requests.RequestException as exc:
            raise SyncError(f"shopify: {self.shop}: the bulk operation's file cannot be read"
                            f" ({type(exc).__name__.lower()})") from None


_NO_KEY = ("shopify: [privacy] hash_key is not set, so orders cannot be matched to helpdesk customers"
           " (customer_key left empty); set HELPDESK_KPI_PRIVACY__HASH_KEY to the key the helpdesk syncs use")


def _bulk_orders(lines: Iterator[str]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Orders with their line items from a bulk JSONL file, where each child line follows its parent."""
    current: dict[str, Any] | None = None
    items: list[dict[str, Any]] = []
    for text in lines:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            raise MalformedResponse("shopify: a line of the bulk operation's file is not JSON") from None
        if "__parentId" in obj:
            if current is not None and obj["__parentId"] == current.get("id"):
                items.append(obj)
            continue
        if current is not None:
            yield current, items
        current, items = obj, []
    if current is not None:
        yield current, items


def read_customer_map(settings: ShopifySettings) -> dict[str, str]:
    """shop customer id -> helpdesk requester "source:id", from `customer_map` (empty when unset)."""
    path = settings.customer_map
    if path is None:
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise ConfigError(f"shopify: connectors.shopify.customer_map {path} cannot be read ({exc.strerror})") from None
    out: dict[str, str] = {}
    for number, row in enumerate(rows, 1):
        if not row or (number == 1 and not _is_requester(row[-1])):
            continue  # a blank line, or the header
        if len(row) != 2 or not _is_requester(row[1]):
            raise ConfigError(f"shopify: {path} line {number}: expected shop_customer_id,source:requester_id")
        out[row[0].strip()] = row[1].strip()
    return out


def _is_requester(text: str) -> bool:
    source, _, ident = text.strip().partition(":")
    return bool(source and ident)
