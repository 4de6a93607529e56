"""A first sync newest first (kpi_core/backfill.py): for every registered connector offering `Backfillable`.

The contract part is parametrized over the registry as tests/test_connector_contract.py is:
each connector, against its own fake over loopback, into a real SQLite store, must end a
newest-first first sync with exactly the rows and cursors an oldest-first one leaves, must
store the current month before any older one, and must resume a stopped or killed backfill
without losing or duplicating anything.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors import registry
from connectors.base import Connector, Page
from connectors.http import RatePacer
from connectors.sandbox import Sandbox
from connectors.sandbox.server import FakeApi
from kpi_core import backfill, status
from kpi_core.backfill import BackfillOptions, month_start, month_windows
from kpi_core.cli import ProgressLine, main
from kpi_core.kpis import filling
from kpi_core.kpis.scorecard import format_scorecard
from kpi_core.model import RECORD_TYPES
from kpi_core.settings import load_settings
from kpi_core.store import Store, open_store
from kpi_core.sync import Progress, SourceResult, sync_one, sync_source

SEED = 21
TICKETS = 240
DAYS = 400  # about thirteen months: a dozen windows per stream
PAGE_SIZE = 10  # small pages: every window takes a few
RECORD_TABLES = tuple(sorted(RECORD_TYPES))
# The limit the fakes advertise here: these syncs share a fake for a minute and more, and the
# pacer would rightly wait out the vendor's window once its advertised budget is spent.
UNLIMITED = 1_000_000


def _capable() -> list[str]:
    """Registered connectors with a fake whose connector offers the backfill capability."""
    names = []
    for name, plugin in registry.plugins().items():
        connector_class = getattr(plugin, "connector", None)
        if plugin.fake is not None and connector_class is not None and hasattr(connector_class, "read_window"):
            names.append(name)
    return names


CAPABLE = _capable()


@pytest.fixture(scope="module", params=CAPABLE)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeApi]:
    box = Sandbox.generate(seed=SEED, tickets=TICKETS, names=(request.param,), days=DAYS)
    box[request.param].nominal_limit = UNLIMITED
    box.start()
    yield box[request.param]
    box.stop()


@pytest.fixture(scope="module", autouse=True)
def frozen_clock() -> Iterator[None]:
    """One wall-clock second for the module: a bookmark may hold when its pass started (a signpost, a
    daily re-read), so the syncs compared must start in the same second. Waits use monotonic time."""
    now = time.time()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: now)
        yield


def build(fake: FakeApi, **overrides: Any) -> Connector:
    name = fake_name(fake)
    settings = registry.plugin(name).settings(**{**fake.connector_settings(), "page_size": PAGE_SIZE, **overrides})
    return registry.build_connector(name, settings)


def fake_name(fake: FakeApi) -> str:
    return next(n for n, p in registry.plugins().items() if p.fake is type(fake))


def sync(store: Store, fake: FakeApi, options: BackfillOptions | None, **kwargs: Any) -> SourceResult:
    connector = build(fake)
    try:
        return sync_source(store, connector, backfill_options=options, **kwargs)
    finally:
        connector.close()


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    return {t: [tuple(r) for r in store.db.execute(f"SELECT * FROM [{t}] ORDER BY source, source_id")]
            for t in RECORD_TABLES}


@pytest.fixture(scope="module")
def oldest_first(fake: FakeApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The reference: today's first sync, one oldest-first pass."""
    store = open_store(tmp_path_factory.mktemp("oldest") / "kpi.sqlite")
    result = sync(store, fake, None)
    assert result.ok and result.records > 0
    yield store
    store.close()


# --- the contract ------------------------------------------------------------------------------------------


def test_newest_first_stores_what_oldest_first_stores_with_the_same_cursors(
        fake: FakeApi, oldest_first: Store, store: Store) -> None:
    seen: list[Progress] = []
    result = sync(store, fake, BackfillOptions(threads=3), on_progress=lambda p: seen.append(
        Progress(p.source, p.stream, window=p.window, windows_done=p.windows_done, windows_total=p.windows_total,
                 eta_seconds=p.eta_seconds)))
    assert result.finished, result.error
    name = fake_name(fake)
    windows = store.backfill_windows(name)
    assert len(windows) >= 10 and all(w.done for w in windows)  # every older month, each read to its end
    assert dump(store) == dump(oldest_first)
    assert store.cursors(name) == oldest_first.cursors(name)
    filled = [p for p in seen if p.windows_total]
    assert filled and filled[-1].windows_done == filled[-1].windows_total == len(windows)
    assert filled[-1].eta_seconds == 0.0


def test_every_incremental_read_covers_the_current_month_before_older_months_end(
        fake: FakeApi, oldest_first: Store, store: Store) -> None:
    """Older months are read by threads meanwhile; when the streams' own reads end, the current month is whole."""
    head = month_start(datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = "SELECT source_id, updated_at FROM contacts WHERE updated_at >= ? ORDER BY source_id"
    seen: list[list[Any]] = []

    def at_the_end_of_the_streams(progress: Progress) -> None:
        if progress.stream == "backfill" and not seen:
            seen.append(store.db.execute(recent, [head]).fetchall())

    assert sync(store, fake, BackfillOptions(threads=2), on_progress=at_the_end_of_the_streams).finished
    assert seen and seen[0] == oldest_first.db.execute(recent, [head]).fetchall()


def test_a_stopped_backfill_resumes_and_marks_what_is_still_filling(
        fake: FakeApi, oldest_first: Store, store: Store) -> None:
    """Stopped as soon as the first older page is stored: the next sync goes on from there."""
    name = fake_name(fake)
    stop = threading.Event()

    def stop_at_the_first_older_page(progress: Progress) -> None:
        if progress.window:
            stop.set()

    first = sync(store, fake, BackfillOptions(threads=2), on_progress=stop_at_the_first_older_page, stop=stop)
    assert first.ok and first.stopped
    head = month_start(datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pending = [w for w in store.backfill_windows(name) if not w.done]
    assert pending, "the stop came before every older month was read"

    # While it fills: `status` says how far back it is complete, the KPIs say which periods are filling.
    point = filling.boundary(store, [name])
    assert point is not None and point <= head
    found = backfill.summary(store, name)
    assert found is not None and not found["complete"] and found["complete_back_to"] == point
    line = status._backfill_line(name, found)
    assert line.startswith(f"{name}: first sync complete back to {point[:10]}; filling older months")
    rows: list[dict[str, Any]] = [_row("ticket_volume", "2020-01-01"), _row("ticket_volume", head[:10]),
                                  _row("backlog", head[:10])]
    assert filling.mark(store, [name], rows)
    assert [r.get("filling", False) for r in rows] == [True, False, True]
    text = format_scorecard(rows)
    assert "2020-01-01 .. 2020-02-01 (end exclusive)  |  all contacts  |  filling: still syncing older history" in text
    assert f"{head[:10]} .. 2020-02-01 (end exclusive)  |  all contacts\n" in text  # the current month is final
    assert "(filling)" in text and filling.NOTE in text

    second = sync(store, fake, BackfillOptions(threads=2))
    assert second.finished, second.error
    assert dump(store) == dump(oldest_first)
    assert store.cursors(name) == oldest_first.cursors(name)
    assert filling.boundary(store, [name]) is None
    fresh: list[dict[str, Any]] = [_row("ticket_volume", "2020-01-01"), _row("backlog", head[:10])]
    assert filling.mark(store, [name], fresh) is False
    assert all("filling" not in r for r in fresh)


def test_a_sync_fills_for_its_slice_and_the_next_one_goes_on(fake: FakeApi, oldest_first: Store, store: Store,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's syncs take turns: each reads new changes, then fills older months for a while."""
    name = fake_name(fake)
    kind = registry.plugin(name).connector
    real = kind.read_window

    def slow_months(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for page in real(self, *args, **kwargs):
            time.sleep(0.5)  # so the older months are still being read when the sync's own reads end
            yield page

    monkeypatch.setattr(kind, "read_window", slow_months)
    first = sync(store, fake, BackfillOptions(threads=1, slice_seconds=0.0))
    monkeypatch.undo()
    assert first.finished  # a slice ending is no failure and no stop
    assert any(not w.done for w in store.backfill_windows(name))
    # Newest first turned off meanwhile: the backfill begun is finished all the same.
    assert sync(store, fake, BackfillOptions(enabled=False, threads=2)).finished
    assert all(w.done for w in store.backfill_windows(name))
    assert dump(store) == dump(oldest_first)
    assert store.cursors(name) == oldest_first.cursors(name)


def _row(kpi: str, start: str) -> dict[str, Any]:
    return {"kpi": kpi, "period_start": start, "period_end": "2020-02-01", "segment": {}, "value": 3.0,
            "unit": "count", "target": None, "status": "info", "compared_with": None}


def test_an_older_window_never_overwrites_a_newer_state(fake: FakeApi, oldest_first: Store) -> None:
    name = fake_name(fake)
    stored = oldest_first.db.execute("SELECT source_id, updated_at FROM contacts WHERE source = ? LIMIT 2",
                                     [name]).fetchall()
    (newer_id, newer_at), (same_id, same_at) = stored
    page = Page(records={"contacts": [{"source": name, "source_id": newer_id, "updated_at": "2001-01-01T00:00:00Z"},
                                      {"source": name, "source_id": same_id, "updated_at": same_at}]})
    backfill._keep_newer_states(oldest_first, name, page)
    assert [r["source_id"] for r in page.records["contacts"]] == [same_id]  # the stale one is dropped
    assert newer_at > "2001-01-01T00:00:00Z"


# --- the pieces ----------------------------------------------------------------------------------------------


def test_months_walk_back_from_the_current_one_to_the_oldest_change() -> None:
    head = datetime(2026, 3, 1, tzinfo=timezone.utc)
    oldest = datetime(2025, 12, 14, 9, 30, tzinfo=timezone.utc)
    assert month_windows(oldest, head) == [
        (datetime(2026, 2, 1, tzinfo=timezone.utc), head),
        (datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc)),
        (oldest, datetime(2026, 1, 1, tzinfo=timezone.utc)),
    ]
    assert month_windows(head, head) == []


def test_the_pacer_holds_every_thread_once_the_budget_is_spent() -> None:
    pacer = RatePacer(low_remaining=2)
    assert pacer.claim() == 0.0 and pacer.claim() == 0.0  # two calls in flight
    pacer.finish({"X-Rate-Limit": "10", "X-Rate-Limit-Remaining": "3", "ratelimit-reset": "30"})
    assert pacer.claim() > 25  # 3 left, 1 still in flight, 2 kept in reserve: wait for the reset
    pacer.finish({"X-Rate-Limit": "10", "X-Rate-Limit-Remaining": "9", "ratelimit-reset": "30"})
    assert pacer.claim() == 0.0
    assert pacer.threads(8) == 1  # ten calls a window keep one thread busy
    pacer.finish({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "600"})
    assert pacer.threads(8) == 8

    # A limit no header shows (Zendesk's exports) is learnt from a 429: every other thread holds as long.
    other = threading.Thread(target=lambda: (pacer.claim(), pacer.finish({}, throttled=5.0)))
    other.start()
    other.join()
    assert pacer.claim() > 4


# --- through the CLI's path: a killed first sync, and a rate limit shared by threads -----------------------


@pytest.fixture(scope="module")
def zendesk_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, str]]:
    """A one-helpdesk sandbox of the first capable connector, for the subprocess and rate-limit tests."""
    name = CAPABLE[0]
    box = Sandbox.generate(seed=SEED, tickets=TICKETS, names=(name,), days=DAYS)
    box[name].nominal_limit = UNLIMITED
    box.start()
    yield box, name
    box.stop()


def _config(tmp_path: Path, box: Sandbox, extra: str) -> Path:
    path = tmp_path / "helpdesk-kpi.toml"
    path.write_text(box.config_toml(str(tmp_path / "store.sqlite")) + f"\npage_size = {PAGE_SIZE}\n\n{extra}")
    os.chmod(path, 0o600)
    return path


def _windows_done(path: Path) -> tuple[int, int]:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            done, total = db.execute("SELECT coalesce(sum(done), 0), count(*) FROM backfill_windows").fetchone()
            return int(done), int(total)
    except sqlite3.OperationalError:
        return 0, 0


def test_a_first_sync_killed_mid_backfill_resumes_without_loss_or_duplicates(
        zendesk_like: tuple[Sandbox, str], tmp_path: Path) -> None:
    box, name = zendesk_like
    fake = box[name]
    config = _config(tmp_path, box, "[sync]\nbackfill_threads = 2\n")
    settings = load_settings(config)
    reference = open_store(tmp_path / "reference.sqlite")  # the same settings, read oldest first
    oldest = settings.model_copy(update={"sync": settings.sync.model_copy(update={"backfill": False})})
    assert sync_one(reference, oldest, name).finished
    fake.slow(0.03, times=100_000)  # slow enough to be killed half-way
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_KPI")}
        proc = subprocess.Popen([sys.executable, "-m", "kpi_core.cli", "sync", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _windows_done(tmp_path / "store.sqlite")[0] < 2:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        with fake.lock:
            fake.faults.clear()
    done, total = _windows_done(tmp_path / "store.sqlite")
    assert 2 <= done < total, "killed in the middle of the backfill"
    store = open_store(tmp_path / "store.sqlite")
    try:
        result = sync_one(store, settings, name)
        assert result.finished, result.error
        assert dump(store) == dump(reference)
        assert store.cursors(name) == reference.cursors(name)
    finally:
        store.close()
        reference.close()


def test_threads_share_the_rate_limit_without_a_429(zendesk_like: tuple[Sandbox, str], store: Store,
                                                    make_limit: Callable[[FakeApi], None]) -> None:
    box, name = zendesk_like
    fake = box[name]
    make_limit(fake)
    connector = build(fake)
    try:
        result = sync_source(store, connector, backfill_options=BackfillOptions(threads=4))
        counts = connector.call_counts
    finally:
        connector.close()
    assert result.finished, result.error
    assert counts.throttled == 0
    assert counts.slowdowns > 0  # the budget was spent and every thread waited for the reset
    assert counts.calls == result.api_calls and len(fake.calls()) >= counts.calls


@pytest.fixture
def make_limit() -> Iterator[Callable[[FakeApi], None]]:
    limited: list[FakeApi] = []

    def limit(fake: FakeApi) -> None:
        fake.rate_limit(60, window=1.0)
        fake.clear_log()
        limited.append(fake)

    yield limit
    for fake in limited:
        fake.rate_limit(None)


def test_sync_oldest_first_reads_one_pass_and_the_progress_line_shows_the_months(
        zendesk_like: tuple[Sandbox, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    box, name = zendesk_like
    config = _config(tmp_path, box, "")
    assert main(["sync", "--oldest-first", "--config", str(config)]) == 0
    assert f"{name}: ok" in capsys.readouterr().out
    store = open_store(tmp_path / "store.sqlite")
    try:
        assert store.backfill_windows(name) == [] and store.cursors(name)
    finally:
        store.close()

    class Terminal:
        text = ""

        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

    terminal = Terminal()
    ProgressLine(terminal)(Progress(name, "backfill", pages=3, records=40, api_calls=9, window="tickets 2025-03",
                                    windows_done=7, windows_total=36, eta_seconds=2400))
    assert "filled 7/36 months (last tickets 2025-03), about 40 min left" in terminal.text
