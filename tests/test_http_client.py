"""The shared HTTP client against a tiny fake API on loopback: retries, waits, rate limits, counts."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.base import AuthError, FatalApiError, PermissionDenied, RetryableApiError, SyncError
from connectors.http import HttpClient, WaitInterrupted, stopping_waits, wait_hint
from connectors.sandbox.server import FakeApi, FakeRequest, FakeResponse
from connectors.sandbox.world import World


class PingApi(FakeApi):
    """Two endpoints and Intercom-style rate-limit headers (a reset epoch)."""

    name = "ping"

    def register_routes(self) -> None:
        self.route("GET", "/ping", lambda request, match: FakeResponse(200, {"pong": True}))
        self.route("POST", "/notes", lambda request, match: FakeResponse(201, {"created": request.body}))

    def authorized(self, request: FakeRequest) -> bool:
        return request.headers.get("Authorization") != "Bearer revoked"

    def rate_limit_headers(self, limit: int, remaining: int, reset_in: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(int(time.time() + reset_in))}


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=1, tickets=10)


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[PingApi]:
    fake = PingApi(world)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def api(server: PingApi) -> PingApi:
    server.faults.clear()
    server.rate_limit(None)
    server.clear_log()
    return server


class Sleeps:
    """Records the waits the client asks for instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(api: PingApi, sleeps: Sleeps | None = None, **options: Any) -> HttpClient:
    return HttpClient("ping", api.base_url, sleep=sleeps or Sleeps(), **options)


def test_retry_after_in_seconds_is_waited_for(api: PingApi) -> None:
    api.fail(429, headers={"Retry-After": "7"})
    sleeps = Sleeps()
    assert client(api, sleeps).get("/ping").data == {"pong": True}
    assert sleeps.waits == [7.0]
    assert [r.status for r in api.calls()] == [429, 200]


def test_retry_after_as_an_http_date_is_waited_for(api: PingApi) -> None:
    api.fail(503, headers={"Retry-After": email.utils.formatdate(time.time() + 30, usegmt=True)})
    sleeps = Sleeps()
    client(api, sleeps).get("/ping")
    [wait] = sleeps.waits
    assert 27 <= wait <= 30


def test_a_reset_epoch_is_waited_for_when_there_is_no_retry_after(api: PingApi) -> None:
    api.fail(429, headers={"X-RateLimit-Reset": str(int(time.time()) + 20)})
    sleeps = Sleeps()
    client(api, sleeps).get("/ping")
    [wait] = sleeps.waits
    assert 18 <= wait <= 20


def test_waits_are_capped_so_a_bad_header_cannot_stall_the_sync(api: PingApi) -> None:
    api.fail(429, headers={"Retry-After": "86400"})
    sleeps = Sleeps()
    client(api, sleeps, max_wait=5.0).get("/ping")
    assert sleeps.waits == [5.0]


def test_backoff_without_a_hint_grows_and_stays_under_the_cap(api: PingApi) -> None:
    api.fail(500, times=5)
    sleeps = Sleeps()
    client(api, sleeps, backoff_base=1.0, max_wait=3.0, max_attempts=6).get("/ping")
    assert len(sleeps.waits) == 5
    assert all(0.5 <= w <= 3.0 for w in sleeps.waits)
    assert sleeps.waits[0] <= 1.5  # first retry: base/2 + up to base


def test_retries_run_out_with_a_retryable_error(api: PingApi) -> None:
    api.fail(503, times=10)
    http = client(api, max_attempts=3)
    with pytest.raises(RetryableApiError) as caught:
        http.get("/ping")
    assert caught.value.status == 503 and "/ping" in str(caught.value)
    assert len(api.calls()) == 3 and http.counts.retries == 2 and http.counts.server_errors == 3


def test_few_remaining_calls_slow_the_client_down_until_the_reset(api: PingApi) -> None:
    api.rate_limit(4, window=30)
    sleeps = Sleeps()
    http = client(api, sleeps, low_remaining=2)
    for _ in range(3):
        http.get("/ping")
    assert http.counts.slowdowns == 1  # the third call waited: the second answer said 2 left
    [wait] = sleeps.waits
    assert 25 <= wait <= 30
    assert all(r.status == 200 for r in api.calls())


def test_a_post_that_adds_something_is_never_retried(api: PingApi) -> None:
    api.fail(503, method="POST")
    http = client(api)
    with pytest.raises(RetryableApiError):
        http.request("POST", "/notes", json_body={"note": "x"}, idempotent=False)
    assert len(api.calls()) == 1


def test_4xx_other_than_429_fail_at_once_naming_the_path(api: PingApi) -> None:
    for status, error in ((401, AuthError), (403, PermissionDenied), (404, FatalApiError), (422, FatalApiError)):
        api.clear_log()
        api.fail(status)
        with pytest.raises(error) as caught:
            client(api).get("/ping", params={"token": "s3cret"})
        assert caught.value.status == status and "GET /ping" in str(caught.value)
        assert "s3cret" not in str(caught.value)
        assert len(api.calls()) == 1


def test_unreachable_server_is_a_sync_error_after_the_retries(api: PingApi) -> None:
    url = api.base_url
    api.stop()
    sleeps = Sleeps()
    with pytest.raises(SyncError) as caught:
        HttpClient("ping", url, sleep=sleeps, max_attempts=2, timeout=2).get("/ping")
    host = url.split("://", 1)[1].rstrip("/")
    assert f"ping: GET /ping: cannot reach {host} (connection refused" in str(caught.value)
    assert "Error" not in str(caught.value) and len(sleeps.waits) == 1
    api.start()


def test_a_stop_ends_a_retry_after_wait_at_once(api: PingApi) -> None:
    api.fail(429, headers={"Retry-After": "30"}, times=3)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with stopping_waits(stop), pytest.raises(WaitInterrupted):
        HttpClient("ping", api.base_url).get("/ping")  # the default sleep: interruptible
    assert time.monotonic() - started < 2.0
    assert len(api.calls()) == 1


def test_every_call_is_counted_retries_included(api: PingApi) -> None:
    api.fail(429, headers={"Retry-After": "0"}, times=2)
    http = client(api)
    http.get("/ping")
    http.request("POST", "/notes", json_body={"n": 1}, idempotent=False)
    assert http.calls == len(api.calls()) == 4
    assert http.counts.throttled == 2 and http.counts.retries == 2


def test_wait_hint_reads_every_documented_form() -> None:
    now = 1_800_000_000.0
    assert wait_hint({"Retry-After": "12"}, now) == 12.0
    assert wait_hint({"Retry-After": email.utils.formatdate(now + 40, usegmt=True)}, now) == pytest.approx(40, abs=1)
    assert wait_hint({"X-RateLimit-Reset": str(int(now) + 9)}, now) == 9.0
    assert wait_hint({"X-RateLimit-Reset": "15"}, now) == 15.0  # seconds-until-reset form
    assert wait_hint({}, now) is None
