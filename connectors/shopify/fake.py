"""A fake Shopify Admin GraphQL API over the world's orders, whose customers are the helpdesk fakes' customers.

`POST /admin/api/<version>/graphql.json` with `X-Shopify-Access-Token`. It parses just enough of
the queries the connector sends, by the root field they name (`orders`, `ordersCount`, `shop`,
`bulkOperationRunQuery`, `currentBulkOperation`), checks their shape loosely, and answers in the
documented shapes:
- `orders(first, after, sortKey: UPDATED_AT, query: "updated_at:>='...'")`:
  `data.orders.edges[].{cursor,node}` and `pageInfo.{hasNextPage,endCursor}`; `first` above 250 is an error.
- every answer carries `extensions.cost` (`requestedQueryCost`, `actualQueryCost`, `throttleStatus`
  with `maximumAvailable`, `currentlyAvailable`, `restoreRate`); a query costing more than is
  available answers HTTP 200 with `errors: [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]`.
- a bulk operation goes CREATED -> RUNNING -> COMPLETED over successive polls; its JSONL file (one
  line per order, one per line item with `__parentId`) is served at `/_bulk/<id>.jsonl`, without the token,
  as Shopify's signed storage URLs are.
- a wrong token: 401 `{"errors": "[API] Invalid API key or access token ..."}`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any

from connectors.sandbox.server import FakeApi, FakeRequest, FakeResponse, HttpError
from connectors.sandbox.world import Order, World

ACCESS_TOKEN = "shpat_sandbox_token"
SHOP = "sandbox-shop.myshopify.com"
API_VERSION = "2025-07"
MAX_FIRST = 250


def _iso(epoch: int | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


class CostBucket:
    """Shopify's leaky bucket of query cost points."""

    def __init__(self, maximum: float = 2000.0, restore_rate: float = 100.0) -> None:
        self.maximum = maximum
        self.restore_rate = restore_rate
        self.available = maximum
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.available = min(self.maximum, self.available + (now - self.at) * self.restore_rate)
        self.at = now

    def take(self, requested: float, actual: float) -> bool:
        """Charge a query; False (nothing charged) when `requested` exceeds what is available."""
        with self.lock:
            self._refill()
            if requested > self.available:
                return False
            self.available -= actual
            return True

    def status(self) -> dict[str, float]:
        with self.lock:
            self._refill()
            return {"maximumAvailable": self.maximum, "currentlyAvailable": int(self.available),
                    "restoreRate": self.restore_rate}


class FakeShopify(FakeApi):
    name = "shopify"

    def __init__(self, world: World, *, page_size_cap: int | None = None) -> None:
        self.bucket = CostBucket()
        self.throttled = 0  # THROTTLED answers given
        self.bulk_operations: dict[int, dict[str, Any]] = {}
        self.bulk_files: dict[int, bytes] = {}
        self.current_bulk: int | None = None
        super().__init__(world, page_size_cap=page_size_cap)

    # --- the test API -------------------------------------------------------------------

    def cost_budget(self, maximum: float, restore_rate: float) -> None:
        """Shrink (or restore) the shop's cost bucket: a full bucket of `maximum` refilled at `restore_rate`/s."""
        self.bucket = CostBucket(maximum, restore_rate)

    # --- FakeApi ------------------------------------------------------------------------

    def register_routes(self) -> None:
        self.route("POST", r"/admin/api/[0-9a-z-]+/graphql\.json", self._graphql)
        self.route("GET", r"/_bulk/(\d+)\.jsonl", self._bulk_file)

    def authorized(self, request: FakeRequest) -> bool:
        if request.path.startswith("/_bulk/"):
            return True  # a signed URL: the file is fetched without the shop's token
        token = request.headers.get("X-Shopify-Access-Token") or request.headers.get("x-shopify-access-token")
        return token == ACCESS_TOKEN

    def error_response(self, status: int, message: str, code: str | None = None) -> FakeResponse:
        if status == 401:
            message = "[API] Invalid API key or access token (unrecognized login or wrong password)"
        return FakeResponse(status, {"errors": message})

    def connector_settings(self) -> dict[str, Any]:
        first = min((o.updated_at for o in self.world.orders.values()), default=self.world.start)
        return {"shop": SHOP, "base_url": self.base_url, "access_token": ACCESS_TOKEN,
                "start_date": datetime.fromtimestamp(first, tz=timezone.utc).date().isoformat(),
                "bulk_poll_seconds": 0.05}

    # --- GraphQL ------------------------------------------------------------------------

    def _graphql(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        body = request.body if isinstance(request.body, dict) else {}
        text = body.get("query")
        variables = body.get("variables") or {}
        if not isinstance(text, str) or not isinstance(variables, dict):
            raise HttpError(400, "Parameter Missing or Invalid")
        if "bulkOperationRunQuery" in text:
            return self._charged(10, 10, lambda: self._bulk_run(variables))
        if "currentBulkOperation" in text:
            return self._charged(1, 1, self._bulk_poll)
        if "ordersCount" in text:
            return self._charged(1, 1, lambda: self._count(variables))
        if re.search(r"\borders\s*\(", text):
            return self._orders(text, variables)
        if re.search(r"\bshop\s*\{", text):
            return self._charged(1, 1, lambda: {"shop": {"name": "Sandbox shop", "myshopifyDomain": SHOP,
                                                         "currencyCode": "EUR"}})
        return FakeResponse(200, {"errors": [{"message": "Field not supported by the sandbox",
                                              "extensions": {"code": "undefinedField"}}]})

    def _charged(self, requested: float, actual: float, answer: Any) -> FakeResponse:
        if not self.bucket.take(requested, actual):
            self.throttled += 1
            return FakeResponse(200, {
                "errors": [{"message": "Throttled", "extensions": {
                    "code": "THROTTLED",
                    "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": self._cost(requested, None)}})
        data = answer()
        return FakeResponse(200, {"data": data, "extensions": {"cost": self._cost(requested, actual)}})

    def _cost(self, requested: float, actual: float | None) -> dict[str, Any]:
        return {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": self.bucket.status()}

    def _orders(self, text: str, variables: dict[str, Any]) -> FakeResponse:
        for part in ("edges", "node", "pageInfo", "endCursor"):
            if part not in text:
                raise HttpError(400, f"orders query lacks {part}")
        first = variables.get("first")
        if not isinstance(first, int) or not 1 <= first <= MAX_FIRST:
            return FakeResponse(200, {"errors": [{"message": f"The 'first' argument must be 1..{MAX_FIRST}",
                                                  "extensions": {"code": "BAD_REQUEST"}}]})
        if self.page_size_cap:
            first = min(first, self.page_size_cap)
        requested = 2 + first * 2  # an order and its line-items connection per edge
        matched = self._matching(variables.get("query"))
        after = variables.get("after")
        if after:
            key = _decode_cursor(after)
            matched = [o for o in matched if (o.updated_at, o.id) > key]
        page = matched[:first]
        actual = 2 + len(page) * 2
        return self._charged(requested, actual, lambda: {"orders": {
            "edges": [{"cursor": _encode_cursor(o), "node": self._node(o, inline_lines=True)} for o in page],
            "pageInfo": {"hasNextPage": len(matched) > first,
                         "endCursor": _encode_cursor(page[-1]) if page else None}}})

    def _matching(self, search: Any) -> list[Order]:
        since = None
        if isinstance(search, str) and search:
            found = re.fullmatch(r"updated_at:>='?([0-9T:Z+-]+)'?", search.strip())
            if not found:
                raise HttpError(400, f"the sandbox understands only updated_at:>= searches, not {search!r}")
            since = _epoch(found.group(1))
        orders = [o for o in self.world.orders.values() if since is None or o.updated_at >= since]
        return sorted(orders, key=lambda o: (o.updated_at, o.id))

    def _count(self, variables: dict[str, Any]) -> dict[str, Any]:
        count = len(self._matching(variables.get("query")))
        limit = variables.get("limit")
        if isinstance(limit, int) and count > limit:
            return {"ordersCount": {"count": limit, "precision": "AT_LEAST"}}
        return {"ordersCount": {"count": count, "precision": "EXACT"}}

    def _node(self, order: Order, inline_lines: bool) -> dict[str, Any]:
        person = self.world.customer(order)
        node: dict[str, Any] = {
            "id": f"gid://shopify/Order/{order.id}",
            "name": f"#{order.id}",
            "createdAt": _iso(order.created_at),
            "updatedAt": _iso(order.updated_at),
            "cancelledAt": _iso(order.cancelled_at),
            "currencyCode": order.currency,
            "totalPriceSet": {"shopMoney": {"amount": f"{order.total:.2f}", "currencyCode": order.currency}},
            # The shop knows the customer by the same address the helpdesk does.
            "customer": {"id": f"gid://shopify/Customer/{order.customer_source[0]}{order.customer_id}",
                         "email": person.email, "firstName": person.name.split(" ")[0],
                         "lastName": person.name.split(" ")[-1]},
            "shippingAddress": {"name": person.name, "address1": f"{order.id} Sandbox Street",
                                "phone": person.phone},
            "refunds": [{"createdAt": _iso(r.at), "totalRefundedSet": {"shopMoney": {
                "amount": f"{r.amount:.2f}", "currencyCode": order.currency}}} for r in order.refunds],
        }
        if inline_lines:
            node["lineItems"] = {"edges": [{"node": {"sku": sku, "quantity": qty}} for sku, qty in order.lines],
                                 "pageInfo": {"hasNextPage": False}}
        return node

    # --- bulk operations ------------------------------------------------------------------

    def _bulk_run(self, variables: dict[str, Any]) -> dict[str, Any]:
        text = variables.get("query")
        running = self.current_bulk is not None and self.bulk_operations[self.current_bulk]["status"] != "COMPLETED"
        if running:
            return {"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [{
                "field": None, "message": "A bulk query operation for this app and shop is already in progress"}]}}
        if not isinstance(text, str) or "orders" not in text or "edges" not in text:
            return {"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [{
                "field": ["query"], "message": "Invalid bulk query"}]}}
        found = re.search(r'query:\s*"([^"]*)"', text)
        orders = self._matching(found.group(1) if found else None)
        oid = self.world.next_id()
        lines: list[str] = []
        for order in orders:
            node = self._node(order, inline_lines=False)
            lines.append(json.dumps(node))
            lines.extend(json.dumps({"sku": sku, "quantity": qty, "__parentId": node["id"]})
                         for sku, qty in order.lines)
        self.bulk_files[oid] = ("\n".join(lines) + "\n").encode() if lines else b""
        self.bulk_operations[oid] = {"id": f"gid://shopify/BulkOperation/{oid}", "status": "CREATED",
                                     "errorCode": None, "createdAt": _iso(self.world.clock()),
                                     "completedAt": None, "objectCount": str(len(lines)), "url": None,
                                     "polls": 0, "number": oid}
        self.current_bulk = oid
        return {"bulkOperationRunQuery": {"bulkOperation": {"id": f"gid://shopify/BulkOperation/{oid}",
                                                            "status": "CREATED"}, "userErrors": []}}

    def _bulk_poll(self) -> dict[str, Any]:
        if self.current_bulk is None:
            return {"currentBulkOperation": None}
        op = self.bulk_operations[self.current_bulk]
        op["polls"] += 1
        if op["status"] == "CREATED":
            op["status"] = "RUNNING"
        elif op["status"] == "RUNNING" and op["polls"] >= 2:
            op["status"] = "COMPLETED"
            op["completedAt"] = _iso(self.world.clock())
            if self.bulk_files[op["number"]]:
                op["url"] = f"{self.base_url}/_bulk/{op['number']}.jsonl"
        return {"currentBulkOperation": {k: v for k, v in op.items() if k not in ("polls", "number")}}

    def _bulk_file(self, request: FakeRequest, match: re.Match[str]) -> FakeResponse:
        content = self.bulk_files.get(int(match.group(1)))
        if content is None:
            raise HttpError(404, "no such file")
        return FakeResponse(200, content, {"Content-Type": "application/jsonl"})


def _encode_cursor(order: Order) -> str:
    return base64.b64encode(json.dumps([order.updated_at, order.id]).encode()).decode()


def _decode_cursor(cursor: Any) -> tuple[int, int]:
    try:
        stamp, oid = json.loads(base64.b64decode(str(cursor)))
        return int(stamp), int(oid)
    except (ValueError, TypeError):
        raise HttpError(400, "Invalid cursor for current pagination sort") from None
