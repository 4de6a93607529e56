"""Shopify's Admin GraphQL endpoint: one POST per query, paced by the cost budget the answers report.

Shopify meters GraphQL by query cost, not by calls: every answer's `extensions.cost` carries the
query's `requestedQueryCost` and a `throttleStatus` (`currentlyAvailable` points, refilled at
`restoreRate` per second up to `maximumAvailable`). A query costing more than is available is
answered HTTP 200 with a `THROTTLED` error and no data. So before each query this client waits
until the budget holds the query's last known cost, and a `THROTTLED` answer is waited out for
exactly the missing points and sent again: no burst of refused queries.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.base import AuthError, FatalApiError, MalformedResponse, PermissionDenied, SyncError
from connectors.http import HttpClient, interruptible_sleep

log = logging.getLogger(__name__)

SOURCE = "shopify"
MAX_THROTTLED = 30  # THROTTLED answers in a row before giving up: the budget never refills


@dataclass
class Budget:
    """The shop's cost bucket as the last answer reported it, and when."""

    available: float = 1000.0
    maximum: float = 1000.0
    restore_rate: float = 50.0
    seen_at: float = 0.0

    def now_available(self, now: float) -> float:
        return min(self.maximum, self.available + max(0.0, now - self.seen_at) * self.restore_rate)

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until `cost` points are available (0: at once)."""
        missing = min(cost, self.maximum) - self.now_available(now)
        return max(0.0, missing / self.restore_rate) if self.restore_rate > 0 else 0.0


class GraphqlClient:
    """Queries against `/admin/api/<version>/graphql.json` of one shop."""

    def __init__(self, http: HttpClient, api_version: str, shop: str,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.path = f"/admin/api/{api_version}/graphql.json"
        self.shop = shop
        self.sleep = sleep or interruptible_sleep
        self.clock = clock
        self.budget = Budget()
        self.costs: dict[str, float] = {}  # the last requested cost of each named query
        self.waited = 0.0  # seconds spent waiting for the budget (shown by tests and logs)

    def query(self, name: str, text: str, variables: Mapping[str, Any] | None = None,
              mutation: bool = False) -> dict[str, Any]:
        """The `data` of one query; waits for the cost budget first and waits out THROTTLED answers."""
        for _ in range(MAX_THROTTLED):
            self._pace(self.costs.get(name, 0.0))
            body = self._post(text, variables, mutation)
            cost = self._note_cost(name, body)
            errors = body.get("errors")
            if errors and _code(errors) == "THROTTLED":
                self.http.counts.throttled += 1
                wait = max(1.0, self.budget.wait_for(cost or self.budget.maximum / 2, self.clock()))
                log.info("%s: query %s throttled; waiting %.1fs for the cost budget", SOURCE, name, wait)
                self._wait(wait)
                continue
            if errors:
                raise FatalApiError(f"{SOURCE}: {self.shop}: query {name} failed: {_messages(errors)}")
            data = body.get("data")
            if not isinstance(data, dict):
                raise MalformedResponse(f"{SOURCE}: {self.shop}: query {name} answered no data")
            return data
        raise SyncError(f"{SOURCE}: {self.shop}: query {name} stayed throttled after {MAX_THROTTLED} waits")

    def _post(self, text: str, variables: Mapping[str, Any] | None, mutation: bool) -> dict[str, Any]:
        try:
            resp = self.http.request("POST", self.path, json_body={"query": text, "variables": dict(variables or {})},
                                     idempotent=not mutation)
        except AuthError:
            raise AuthError(f"{SOURCE}: the shop {self.shop} rejected the access token (revoked, or the app"
                            " uninstalled?): check HELPDESK_KPI_CONNECTORS__SHOPIFY__ACCESS_TOKEN", 401) from None
        except PermissionDenied:
            raise PermissionDenied(f"{SOURCE}: the shop {self.shop} refused the query: the app needs the read_orders"
                                   " scope (and read_all_orders for orders older than 60 days)", 403) from None
        if not isinstance(resp.data, dict):
            raise MalformedResponse(f"{SOURCE}: {self.shop}: the GraphQL answer is not a JSON object")
        return resp.data

    def _note_cost(self, name: str, body: Mapping[str, Any]) -> float:
        cost = (body.get("extensions") or {}).get("cost") or {}
        status = cost.get("throttleStatus") or {}
        # No cost reported (an error answer): the last known budget stays.
        with contextlib.suppress(KeyError, TypeError, ValueError):
            self.budget = Budget(float(status["currentlyAvailable"]), float(status["maximumAvailable"]),
                                 float(status["restoreRate"]), self.clock())
        requested = cost.get("requestedQueryCost")
        if isinstance(requested, (int, float)):
            self.costs[name] = float(requested)
            return float(requested)
        return 0.0

    def _pace(self, cost: float) -> None:
        wait = self.budget.wait_for(cost, self.clock())
        if wait > 0:
            self.http.counts.slowdowns += 1
            log.info("%s: %.0f cost points available, the query needs %.0f; waiting %.1fs", SOURCE,
                     self.budget.now_available(self.clock()), cost, wait)
            self._wait(wait)

    def _wait(self, seconds: float) -> None:
        self.waited += seconds
        self.sleep(seconds)


def _code(errors: Any) -> str | None:
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict):
                code = (error.get("extensions") or {}).get("code")
                if isinstance(code, str):
                    return code
    return None


def _messages(errors: Any) -> str:
    if isinstance(errors, list):
        return "; ".join(str(e.get("message")) if isinstance(e, dict) else str(e) for e in errors[:3])
    return str(errors)
