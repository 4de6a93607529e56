"""Fixtures shared by the tests: a real SQLite store, started sandboxes, a config for them, recorded sleeps.

A module picks its sandbox's world with a marker instead of writing its own fixture:

    pytestmark = pytest.mark.sandbox(seed=3, tickets=400, names=("zendesk",))

`sandbox` (one per test) and `module_sandbox` (one per module) both read it; without it they
serve every registered fake over a small world. `fake` is the sandbox's only fake.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kpi_fixtures
import pytest
from chromium import DevTools, chromium_binary
from pg_server import PgServer, unavailable_reason

from connectors.http import HttpClient
from connectors.sandbox import Sandbox
from connectors.sandbox.server import FakeApi
from kpi_core.store import Store, open_store

DEFAULT_WORLD: dict[str, Any] = {"seed": 7, "tickets": 60}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sandbox(seed=7, tickets=60, names=None, **fake_options): the world of the `sandbox` fixtures")


@contextmanager
def running_sandbox(**world: Any) -> Iterator[Sandbox]:
    """A generated sandbox, started on free loopback ports and stopped afterwards."""
    box = Sandbox.generate(**{**DEFAULT_WORLD, **world})
    box.start()
    try:
        yield box
    finally:
        box.stop()


def _marked_world(node: pytest.Item | pytest.Collector) -> dict[str, Any]:
    marker = node.get_closest_marker("sandbox")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store in a real SQLite file (tmp_path/kpi.sqlite), closed after the test."""
    opened = open_store(tmp_path / "kpi.sqlite")
    yield opened
    opened.close()


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """`make_sandbox(seed=, tickets=, names=, **fake_options)`: started now, stopped after the test."""
    started: list[Sandbox] = []

    def make(**world: Any) -> Sandbox:
        box = Sandbox.generate(**{**DEFAULT_WORLD, **world})
        box.start()
        started.append(box)
        return box

    yield make
    for box in started:
        box.stop()


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """A started sandbox of the world the closest `sandbox` marker describes, for one test."""
    return make_sandbox(**_marked_world(request.node))


@pytest.fixture(scope="module")
def module_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """Like `sandbox`, shared by the tests of a module (which must leave its world as they found it)."""
    with running_sandbox(**_marked_world(request.node)) as box:
        yield box


@pytest.fixture
def fake(sandbox: Sandbox) -> FakeApi:
    """The one fake of a single-helpdesk sandbox."""
    assert len(sandbox.fakes) == 1, f"`fake` needs a sandbox of one helpdesk, not {list(sandbox.fakes)}"
    return next(iter(sandbox.fakes.values()))


@pytest.fixture
def config_for(tmp_path: Path) -> Callable[..., Path]:
    """`config_for(sandbox, extra="")`: a config file (mode 0600) pointing every connector at `sandbox`,
    with its store at tmp_path/store.sqlite and `extra` TOML appended."""

    def write(box: Sandbox, extra: str = "", *, name: str = "helpdesk-kpi.toml", start_date: str | None = None) -> Path:
        path = tmp_path / name
        path.write_text(box.config_toml(str(tmp_path / "store.sqlite"), start_date=start_date) + "\n" + extra)
        os.chmod(path, 0o600)
        return path

    return write


class Sleeps:
    """Every wait an HTTP client asked for, instead of sleeping it."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    def total(self) -> float:
        return sum(self.waits)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    """Every `HttpClient` built during the test records its waits (retries, Retry-After) instead of sleeping."""
    sleeps = Sleeps()
    original = HttpClient.__init__

    def recording(self: HttpClient, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, "sleep": sleeps})

    monkeypatch.setattr(HttpClient, "__init__", recording)
    return sleeps


@pytest.fixture(scope="module")
def browser() -> Iterator[DevTools]:
    """One headless chromium per test module (tests/browser.py); skipped where chromium is not installed."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")
    devtools = DevTools(binary)
    yield devtools
    devtools.close()


# -- PostgreSQL (tests/pg_server.py, docs/postgresql.md) -------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL cluster on a private Unix socket, one per test process (each xdist worker has its own);
    skipped only where none can be started (PostgreSQL not installed: .ci/run installs it)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with PgServer() as server:
        yield server


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database named after the test, dropped after it (open sessions included)."""
    with pg_server.database(request.node.name) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each kind in turn: a SQLite file, then a PostgreSQL account (tests/pg_server.py).
    A module whose tests must hold on both stores overrides `store` with it."""
    if request.param == "sqlite":
        opened = open_store(tmp_path / "kpi.sqlite")
        yield opened
        opened.close()
        return
    server: PgServer = request.getfixturevalue("pg_server")
    with server.database(request.node.name) as url:
        opened = open_store(url, "contract")
        yield opened
        opened.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`main` points the root logger at the test's captured stderr; later tests must not write to it closed."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(params=["sqlite", "postgresql"])
def on_both_stores(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test whose stores come from `kpi_fixtures.make_store` once on SQLite files, once on PostgreSQL
    accounts (each store an account of the test's own database): the hand-computed KPI cases hold on both."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    with server.database(request.node.name) as url:
        kpi_fixtures.SERVER["url"] = url
        try:
            yield "postgresql"
        finally:
            kpi_fixtures.SERVER.clear()
