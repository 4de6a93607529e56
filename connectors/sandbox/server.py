"""The machinery every fake helpdesk shares: HTTP on loopback, routing, auth, rate limits,
fault injection and a log of every request.

A vendor fake subclasses `FakeApi`, declares its routes and says how its vendor spells
auth failures, error bodies and rate-limit headers. Tests drive faults through the Python
API (`fail`, `malformed`, `rate_limit`); a sandbox run as a separate process is driven
through `POST /_sandbox/<action>` with a JSON body (loopback only, no auth).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.sandbox.world import World


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw_body: bytes = b""

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class FakeResponse:
    status: int = 200
    body: Any = None  # JSON-able, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    at: float


@dataclass
class ServedResponse:
    """One answer as it went out (`record_responses`): the body is the JSON sent, or bytes when not JSON."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    body: Any
    injected: bool  # a fault's answer (status, body or cut), not the fake's own


@dataclass
class Fault:
    status: int | None = None  # None with malformed=True: the real answer, cut short
    times: int = 1
    skip: int = 0  # let this many matching requests through first
    path: str | None = None  # regex on the path; None matches any
    method: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    malformed: bool = False
    delay: float = 0.0  # seconds to stall before answering (timeouts)


class HttpError(Exception):
    """Raised by a route handler to answer with the vendor's error shape."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


Handler = Callable[[FakeRequest, "re.Match[str]"], FakeResponse]


class FakeApi:
    """One fake helpdesk API over a shared `World`."""

    name = "fake"
    # What `helpdesk-kpi demo` writes back into this fake: (object, metric, field) mappings
    # and (rule, template) notes. Empty: the demo pushes nothing here.
    demo_mappings: tuple[tuple[str, str, str], ...] = ()
    demo_notes: tuple[tuple[str, str], ...] = ()
    # The world's field changes (`Ticket.changes`: group, priority, assignee) whose moves this vendor's API
    # shows and this fake serves; what a connector reading changes must store (tests/test_connector_contract.py).
    change_fields: frozenset[str] = frozenset()

    def __init__(self, world: World, *, page_size_cap: int | None = None) -> None:
        self.world = world
        self.lock = threading.RLock()
        self.requests: list[LoggedRequest] = []
        self.served: list[ServedResponse] | None = None  # None: not recording (see `record_responses`)
        self.faults: list[Fault] = []
        self.limit: int | None = None  # calls per window when rate limiting is on
        self.window = 60.0
        self._window_start = time.monotonic()
        self._window_calls = 0
        self.nominal_limit = 700  # what the headers advertise when nothing is enforced
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.page_size_cap = page_size_cap
        self.server: ThreadingHTTPServer | None = None
        self.base_url = ""
        self.register_routes()

    # --- for subclasses ---------------------------------------------------------------

    def prepare_demo_field(self, object: str, field: str, kind: str) -> None:
        """Play the admin for a mapped field the API cannot create (`kind`: text, integer, number, checkbox)."""

    def register_routes(self) -> None:
        raise NotImplementedError

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def authorized(self, request: FakeRequest) -> bool:
        raise NotImplementedError

    def connector_settings(self) -> dict[str, Any]:
        """The `[connectors.NAME]` keys that point the real connector at this fake."""
        raise NotImplementedError

    def error_response(self, status: int, message: str, code: str | None = None) -> FakeResponse:
        return FakeResponse(status, {"error": code or "error", "description": message})

    def rate_limit_headers(self, limit: int, remaining: int, reset_in: float) -> dict[str, str]:
        return {}

    def throttle_headers(self, wait: float) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(wait)))}

    def request_cost(self, path: str, query: dict[str, list[str]]) -> int:
        """Rate-limit credits one call uses (Freshdesk charges extra for includes)."""
        return 1

    # --- the test API -----------------------------------------------------------------

    def fail(self, status: int, *, times: int = 1, skip: int = 0, path: str | None = None, method: str | None = None,
             headers: dict[str, str] | None = None, body: Any = None, delay: float = 0.0) -> None:
        """Answer the next `times` matching requests (after `skip`) with `status`."""
        with self.lock:
            self.faults.append(Fault(status, times, skip, path, method, headers or {}, body, False, delay))

    def malformed(self, *, times: int = 1, skip: int = 0, path: str | None = None) -> None:
        """Cut the next matching answers short, as a dropped connection does."""
        with self.lock:
            self.faults.append(Fault(None, times, skip, path, None, {}, None, True))

    def slow(self, delay: float, *, times: int = 1, skip: int = 0, path: str | None = None) -> None:
        """Answer the next matching requests normally, but only after `delay` seconds (slow links, timeouts)."""
        with self.lock:
            self.faults.append(Fault(None, times, skip, path, None, {}, None, False, delay))

    def rate_limit(self, limit: int | None, window: float = 60.0) -> None:
        """Enforce `limit` calls per `window` seconds (None: off)."""
        with self.lock:
            self.limit, self.window = limit, window
            self._window_start, self._window_calls = time.monotonic(), 0

    def record_responses(self, on: bool = True) -> None:
        """Keep (or stop keeping, and drop) every answer served, for the conformance tests."""
        with self.lock:
            self.served = [] if on else None

    def clear_log(self) -> None:
        with self.lock:
            self.requests.clear()

    def calls(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or re.search(path, r.path))]

    # --- serving ------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def _serve(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name=f"sandbox-{self.name}", daemon=True).start()
        bound_host, bound_port = self.server.server_address[:2]
        if isinstance(bound_host, bytes):  # typeshed allows bytes (AF_UNIX); an AF_INET server reports str
            bound_host = bound_host.decode()
        self.base_url = f"http://{bound_host}:{bound_port}"
        return self.base_url

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        request = FakeRequest(h.command, split.path, parse_qs(split.query, keep_blank_values=True),
                              {k: v for k, v in h.headers.items()}, body, raw)
        response, cut = self.dispatch(request)
        payload = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
        if cut:
            payload = payload[: max(1, len(payload) // 2)]
        h.send_response(response.status)
        headers = {"Content-Type": "application/json; charset=utf-8", **response.headers}
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def dispatch(self, request: FakeRequest) -> tuple[FakeResponse, bool]:
        """Answer one request; the second value says whether to cut the body short."""
        if request.path.startswith("/_sandbox/"):
            return self._control(request), False
        fault = self._take_fault(request)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        response, cut = self._answer(request, fault)
        with self.lock:
            self.requests.append(LoggedRequest(request.method, request.path, request.query, request.body,
                                               response.status, time.time()))
            if self.served is not None:
                body = response.body if isinstance(response.body, bytes) else json.loads(json.dumps(response.body))
                self.served.append(ServedResponse(request.method, request.path, request.query, response.status, body,
                                                  fault is not None and (fault.status is not None or cut)))
        return response, cut

    def _answer(self, request: FakeRequest, fault: Fault | None) -> tuple[FakeResponse, bool]:
        throttled_for = self._count_call(self.request_cost(request.path, request.query))
        if fault is not None and fault.status is not None:
            response = self.error_response(fault.status, f"injected {fault.status}")
            if fault.body is not None:
                response.body = fault.body
            if fault.status == 429 and not fault.headers:
                response.headers.update(self.throttle_headers(1))
            response.headers.update(fault.headers)
            return self._with_limits(response), False
        if throttled_for is not None:
            response = self.error_response(429, "Rate limit exceeded", "rate_limit_exceeded")
            response.headers.update(self.throttle_headers(throttled_for))
            return self._with_limits(response), False
        if not self.authorized(request):
            return self._with_limits(self.error_response(401, "Couldn't authenticate you", "unauthorized")), False
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                try:
                    with self.world.lock:
                        response = handler(request, match)
                except HttpError as exc:
                    response = self.error_response(exc.status, exc.message, exc.code)
                    response.headers.update(exc.headers)
                return self._with_limits(response), bool(fault and fault.malformed)
        not_found = self.error_response(404, f"No route for {request.method} {request.path}", "not_found")
        return self._with_limits(not_found), False

    def _take_fault(self, request: FakeRequest) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path and not re.search(fault.path, request.path):
                    continue
                if fault.method and fault.method != request.method:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _count_call(self, cost: int = 1) -> float | None:
        """Count a call (of `cost` credits) against the window; return seconds to wait when over the limit."""
        with self.lock:
            now = time.monotonic()
            if now - self._window_start >= self.window:
                self._window_start, self._window_calls = now, 0
            self._window_calls += cost
            if self.limit is not None and self._window_calls > self.limit:
                return self.window - (now - self._window_start)
            return None

    def _with_limits(self, response: FakeResponse) -> FakeResponse:
        with self.lock:
            limit = self.limit if self.limit is not None else self.nominal_limit
            remaining = max(0, limit - self._window_calls)
            reset_in = max(0.0, self.window - (time.monotonic() - self._window_start))
        for key, value in self.rate_limit_headers(limit, remaining, reset_in).items():
            response.headers.setdefault(key, value)
        return response

    def _control(self, request: FakeRequest) -> FakeResponse:
        """`POST /_sandbox/{fail,malformed,rate_limit,mutate,add,clear_log,requests}`."""
        action = request.path.removeprefix("/_sandbox/")
        args = request.body if isinstance(request.body, dict) else {}
        if action == "fail":
            self.fail(int(args["status"]), times=int(args.get("times", 1)), skip=int(args.get("skip", 0)),
                      path=args.get("path"), headers=args.get("headers"))
        elif action == "malformed":
            self.malformed(times=int(args.get("times", 1)), skip=int(args.get("skip", 0)), path=args.get("path"))
        elif action == "rate_limit":
            self.rate_limit(args.get("limit"), float(args.get("window", 60)))
        elif action == "mutate":
            return FakeResponse(200, {"changed": self.world.mutate(self.name, int(args.get("count", 10)))})
        elif action == "add":
            return FakeResponse(200, {"added": self.world.add_tickets(self.name, int(args.get("count", 10)))})
        elif action == "clear_log":
            self.clear_log()
        elif action == "requests":
            return FakeResponse(200, {"count": len(self.requests)})
        else:
            return FakeResponse(404, {"error": f"unknown sandbox action {action!r}"})
        return FakeResponse(200, {"ok": True})
