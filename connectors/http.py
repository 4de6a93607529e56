"""The one HTTP client every connector uses: timeouts, retries, rate limits, call counts.

- 429 and 5xx and connection errors are retried (tenacity) with jittered exponential
  backoff, capped; a `Retry-After` (seconds or HTTP date) or an `X-RateLimit-Reset` epoch
  on the response is honoured instead of the backoff.
- Any other 4xx is never retried: 401 and 403 become `AuthError` / `PermissionDenied`
  naming the endpoint path, others `FatalApiError`.
- When the rate-limit headers say few calls remain, the client waits for the window to
  reset before the next call, so a long sync does not run into a wall of 429s.
- Messages and logs carry the method and the URL *path* only: no query string, header or
  body, so no token can leak through them. Connection errors name the host they could not reach.
- Every wait (a retry's backoff, `Retry-After`, a rate-limit pause) ends early when the
  caller's stop event is set (`stopping_waits`): it raises `WaitInterrupted`, so SIGTERM
  never waits out a 50-second `Retry-After`.
"""

from __future__ import annotations

import email.utils
import gc
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from connectors.base import (
    AuthError,
    FatalApiError,
    MalformedResponse,
    PermissionDenied,
    RetryableApiError,
    SyncError,
    Unreachable,
)
from connectors.base import CallCounts as CallCounts  # defined with the contract; re-exported for old imports

log = logging.getLogger(__name__)

_REMAINING_HEADERS = ("X-Rate-Limit-Remaining", "X-RateLimit-Remaining", "ratelimit-remaining")
_LIMIT_HEADERS = ("X-Rate-Limit", "X-RateLimit-Limit", "X-RateLimit-Total", "ratelimit-limit")


@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: Mapping[str, str]
    data: Any
    path: str


class WaitInterrupted(Exception):
    """A wait of the client was cut short by the stop event: the caller stops, nothing failed."""


def _header(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value
    return None


def wait_hint(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: `Retry-After` (seconds or date), else a reset epoch."""
    now = time.time() if now is None else now
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(retry_after) if retry_after else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - now)
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            return None
        # An epoch (Intercom) or, on some APIs, seconds until reset.
        return max(0.0, value - now) if value > 1_000_000_000 else max(0.0, value)
    return None


class RatePacer:
    """One account's rate budget as its rate-limit headers tell it, shared by the clients reading it.

    Each response says how many calls remain in the window (and, on most APIs, when it
    resets). A call is claimed only while more than `low_remaining` calls are left beyond
    those already in flight; otherwise every client sharing the pacer waits for the reset,
    so threads use the whole budget without running into a wall of 429s. Without headers it
    never waits. Thread-safe.
    """

    def __init__(self, low_remaining: int = 2) -> None:
        self.low_remaining = low_remaining
        self.limit: int | None = None  # calls per window, as the last response said
        self._remaining: int | None = None
        self._reset_at = 0.0  # monotonic time the window is known to reset
        self._held_until = 0.0  # monotonic time a 429's wait ends
        self._held_by: int | None = None  # the thread that met it
        self._in_flight = 0
        self._lock = threading.Lock()
        # The thread whose calls go first (a sync's own reads, while other threads backfill): the
        # others leave it a quarter of each window.
        self.foreground: int | None = None

    def claim(self, force: bool = False) -> float:
        """0 when a call may go now (it is counted in flight), else the seconds to wait first.

        `force`: the caller has waited what it was told; the call goes whatever is known.
        """
        with self._lock:
            now = time.monotonic()
            if not force and now < self._held_until and threading.get_ident() != self._held_by:
                return self._held_until - now  # a 429 told another thread to wait: this one waits too
            if self._remaining is not None and (force or now >= self._reset_at):
                self._remaining = None  # the window has reset: the next answer says what is left
            reserve = self.low_remaining
            if self.foreground is not None and self.foreground != threading.get_ident() and self.limit:
                reserve += self.limit // 4
            if self._remaining is not None and self._remaining - self._in_flight <= reserve:
                return max(self._reset_at - now, 0.05)
            self._in_flight += 1
            return 0.0

    def finish(self, headers: Mapping[str, str], throttled: float | None = None) -> None:
        """A claimed call ended; `headers` are its response's (empty when it got none).

        `throttled`: the call met a 429 asking to wait this long. A limit the headers do not
        show (Zendesk's 10 exports a minute) is learnt that way: every client sharing the pacer
        holds its calls as long, so threads meet one 429 where each would have met its own.
        """
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if throttled is not None:  # the throttled thread waits through its own retry
                self._held_until = max(self._held_until, time.monotonic() + throttled)
                self._held_by = threading.get_ident()
            remaining = _number(_header(headers, _REMAINING_HEADERS))
            if remaining is None:
                return
            limit = _number(_header(headers, _LIMIT_HEADERS))
            if limit is not None and limit > 0:
                self.limit = limit
            hint = wait_hint({k: v for k, v in headers.items() if k != "Retry-After"})
            if hint is None:
                hint = _number(headers.get("ratelimit-reset"))  # seconds until the reset (Zendesk)
            self._remaining = remaining
            self._reset_at = time.monotonic() + min(float(hint) if hint is not None else 1.0, 120.0)

    def threads(self, wanted: int) -> int:
        """How many threads may read at once: `wanted`, fewer when the limit is small.

        About one thread per ten calls a window: a small budget (Zendesk's 10 exports a
        minute) is spent by one thread, and more would only queue at the pacer and meet 429s
        together. Before any header was seen: `wanted`.
        """
        if self.limit is None:
            return max(1, wanted)
        return max(1, min(wanted, self.limit // 10 or 1))


def _number(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class HttpClient:
    """A requests.Session bound to one helpdesk's base URL and credentials."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        auth: tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_attempts: int = 6,
        max_wait: float = 120.0,
        backoff_base: float = 0.5,
        low_remaining: int = 2,
        sleep: Callable[[float], None] | None = None,
        pacer: RatePacer | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.backoff_base = backoff_base
        self.low_remaining = low_remaining
        # Connectors hand down `time.sleep` as their default: it becomes the interruptible one too.
        self.sleep = interruptible_sleep if sleep is None or sleep is time.sleep else sleep
        self.counts = CallCounts()
        # The account's rate budget: this client's own, or one shared with the clients that read
        # the same account from other threads (a backfill's windows).
        self.pacer = pacer if pacer is not None else RatePacer(low_remaining)
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or netrc from the environment
        if auth is not None:
            self.session.auth = auth
        self.session.headers.update({"Accept": "application/json", "User-Agent": "helpdesk-kpi"})
        if headers:
            self.session.headers.update(headers)

    @property
    def calls(self) -> int:
        return self.counts.calls

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url + "/", path.lstrip("/"))

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> ApiResponse:
        return self.request("GET", path, params=params)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
        attempts: int | None = None,
    ) -> ApiResponse:
        """Send one request, retrying only what is safe to retry. Returns parsed JSON.

        `attempts` caps the tries below `max_attempts` (a quick check need not wait out every backoff).
        """
        tries = min(attempts or self.max_attempts, self.max_attempts) if idempotent else 1
        retrying = Retrying(
            retry=retry_if_exception_type((RetryableApiError, requests.ConnectionError, requests.Timeout)),
            wait=self._wait,
            stop=stop_after_attempt(tries),
            sleep=self._pause,
            reraise=True,
            before_sleep=self._before_sleep,
        )
        try:
            return retrying(self._send, method, path, params, json_body)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unreachable(self._unreachable(method, path, exc), urlsplit(self.url(path)).netloc) from None

    def _unreachable(self, method: str, path: str, exc: BaseException) -> str:
        """A connection failure as one line naming the source, the host and what went wrong."""
        host = urlsplit(self.url(path)).netloc or self.base_url
        problem = _connection_problem(exc, self.timeout)
        return f"{self.name}: {method} {self._path(path)}: cannot reach {host} ({problem})"

    def _pause(self, seconds: float) -> None:
        """Wait, unless the stop event is (or becomes) set: then raise WaitInterrupted."""
        stop = _stop_event.get()
        if stop is not None and stop.is_set():
            raise WaitInterrupted(f"{self.name}: stopped instead of waiting {seconds:.1f}s")
        self.sleep(seconds)
        if stop is not None and stop.is_set():
            raise WaitInterrupted(f"{self.name}: stopped while waiting {seconds:.1f}s")

    def _send(self, method: str, path: str, params: Mapping[str, Any] | None, json_body: Any) -> ApiResponse:
        self._respect_pause()
        url = self.url(path)
        self.counts.calls += 1
        headers: Mapping[str, str] = {}
        throttled: float | None = None
        try:
            resp = self.session.request(method, url, params=params, json=json_body, timeout=self.timeout)
            headers = resp.headers
            if resp.status_code == 429:
                throttled = min(wait_hint(resp.headers) or 1.0, self.max_wait)
        finally:
            self.pacer.finish(headers, throttled)
        where = f"{self.name}: {method} {self._path(url)}"
        status = resp.status_code
        if status == 429 or status >= 500:
            if status == 429:
                self.counts.throttled += 1
            else:
                self.counts.server_errors += 1
            # A rate-limit reset epoch only says when to retry a 429; Intercom sends it on every
            # response, so a 5xx honours Retry-After alone and otherwise backs off.
            retry_after = resp.headers.get("Retry-After")
            hint = wait_hint(resp.headers) if status == 429 else (
                wait_hint({"Retry-After": retry_after}) if retry_after else None)
            raise RetryableApiError(f"{where}: {status} {resp.reason}", status, hint)
        if status == 401:
            raise AuthError(f"{where}: 401 the credentials were rejected (expired or revoked token?)", status)
        if status == 403:
            raise PermissionDenied(
                f"{where}: 403 permission denied: the credentials lack access to this endpoint"
                f"{_vendor_message(resp)}",
                status,
            )
        if status >= 400:
            raise FatalApiError(f"{where}: {status} {resp.reason}{_vendor_message(resp)}", status)
        if status == 204 or not resp.content:
            return ApiResponse(status, resp.headers, None, self._path(url))
        try:
            data = decode_json(resp.content)
        except ValueError:
            raise MalformedResponse(
                f"{where}: the response body is not valid JSON ({len(resp.content)} bytes, truncated?)"
            ) from None
        return ApiResponse(status, resp.headers, data, self._path(url))

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after", None)
        if hint is not None:
            return min(float(hint), self.max_wait)
        backoff = self.backoff_base * (2 ** (state.attempt_number - 1))
        return min(random.uniform(0, backoff) + self.backoff_base / 2, self.max_wait)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.counts.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        where = state.args
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)) and len(where) >= 2:
            text = self._unreachable(where[0], where[1], exc)
        else:
            text = _describe(exc, self.name)
        log.warning("%s (retry %d in %.1fs)", text, state.attempt_number, wait)
        _announce_wait(wait)

    def _respect_pause(self) -> None:
        """Wait while the account's budget is spent (few calls left until the window resets), then claim a call."""
        delay = self.pacer.claim()
        if delay > 0:
            self.counts.slowdowns += 1
            log.info("%s: %d calls left in the rate-limit window; waiting %.1fs", self.name, self.low_remaining, delay)
            _announce_wait(delay)
            self._pause(delay)
            self.pacer.claim(force=True)  # the window has reset meanwhile

    @staticmethod
    def _path(url: str) -> str:
        return urlsplit(url).path


class ClientOwner:
    """What every connector and writer shares: it owns one HTTP client, counts its calls and closes it."""

    client: HttpClient

    @property
    def api_calls(self) -> int:
        return self.client.calls

    @property
    def call_counts(self) -> CallCounts:
        return self.client.counts

    def close(self) -> None:
        self.client.close()

    def readers(self, wanted: int) -> int:
        """How many threads may read this account at once, as its rate-limit headers allow (a backfill's)."""
        return self.client.pacer.threads(wanted)

    def prefer_this_thread(self, on: bool) -> None:
        """While on, the calling thread's calls go before those of the other clients sharing the pacer."""
        self.client.pacer.foreground = threading.get_ident() if on else None


# Told the seconds of each wait before it starts (a retry's backoff, a rate-limit pause), in
# this thread: a sync stores the pages it holds first, so that nothing read waits unstored.
_before_wait: ContextVar[Callable[[float], None] | None] = ContextVar("before_wait", default=None)


@contextmanager
def announcing_waits(callback: Callable[[float], None]) -> Iterator[None]:
    """Within the block, `callback(seconds)` runs before any client of this thread waits."""
    token = _before_wait.set(callback)
    try:
        yield
    finally:
        _before_wait.reset(token)


def _announce_wait(seconds: float) -> None:
    callback = _before_wait.get()
    if callback is not None and seconds > 0:
        callback(seconds)


def _describe(exc: BaseException | None, name: str) -> str:
    if isinstance(exc, SyncError):
        return str(exc)
    return f"{name}: {exc}" if exc else f"{name}: error"


def _connection_problem(exc: BaseException, timeout: float) -> str:
    """What a connection failure was, in words: never the exception's class name."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "the TLS handshake failed: check the URL and the server's certificate"
    text = str(exc)
    if "Name or service not known" in text or "nodename nor servname" in text or "Failed to resolve" in text \
            or "Temporary failure in name resolution" in text:
        return "the host name does not resolve: check the subdomain, domain or base_url"
    if "Connection refused" in text:
        return "connection refused: nothing listens there"
    if "Connection reset" in text or "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the connection was closed by the server"
    return "the connection failed"


# Set by `stopping_waits` in this thread: the event whose setting ends any wait of a client.
_stop_event: ContextVar[threading.Event | None] = ContextVar("stop_event", default=None)


@contextmanager
def stopping_waits(stop: threading.Event | None) -> Iterator[None]:
    """Within the block, a client's waits end (raising WaitInterrupted) as soon as `stop` is set."""
    token = _stop_event.set(stop)
    try:
        yield
    finally:
        _stop_event.reset(token)


def interruptible_sleep(seconds: float) -> None:
    """The default sleep: `time.sleep`, or a wait on this thread's stop event when there is one."""
    stop = _stop_event.get()
    if stop is None:
        time.sleep(seconds)
    else:
        stop.wait(seconds)


def _vendor_message(resp: requests.Response) -> str:
    """The vendor's own error text, when it sends one (never echoes request data)."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    text: Any = None
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            if isinstance(first, dict):
                text = first.get("message") or first.get("title") or first.get("code")
                if text and isinstance(first.get("field"), str) and first["field"]:
                    text = f"{first['field']}: {text}"  # Freshdesk: which field failed validation
        text = text or body.get("description") or body.get("error") or body.get("message")
        detail = _first_detail(body.get("details"))
        if detail and isinstance(text, str):
            text = f"{text}: {detail}"  # Zendesk's RecordInvalid says what was invalid only here
    if isinstance(text, dict):
        text = text.get("message") or text.get("title")
    return f" ({str(text)[:200]})" if text else ""


def _first_detail(details: Any) -> str | None:
    """The first description in Zendesk's `details` ({field: [{description}]}), if any."""
    if not isinstance(details, dict):
        return None
    for items in details.values():
        for item in items if isinstance(items, list) else ():
            description = item.get("description") if isinstance(item, dict) else None
            if isinstance(description, str):
                return description
    return None


def decode_json(content: bytes) -> Any:
    """A response body as Python values, with the cyclic garbage collector paused meanwhile.

    orjson is several times faster than `resp.json()` on 1,000-record pages. A decoded page
    holds no reference cycles, yet a 1,000-ticket page with its sideloads is ~200,000 new
    objects, and the collector, left on, walks the half-built page over and over (measured on
    a 50,000-ticket Zendesk sync: the HTTP client's CPU 9.1 s -> 6.1 s).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return orjson.loads(content)
    finally:
        if was_enabled:
            gc.enable()
