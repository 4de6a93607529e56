"""A connector from outside this distribution: registered by an entry point, synced end to end.

The test writes a tiny connector package ("tinydesk") and its `*.dist-info` into tmp_path,
serves a tiny fake API on loopback, and drives it with nothing but configuration: settings
validation, `helpdesk-kpi sync` and `helpdesk-kpi status` in a subprocess. Nothing in
kpi_core or connectors is touched to make it work.
"""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors import registry
from kpi_core.settings import load_settings

TOKEN = "tiny-secret-token"
TICKETS = [
    {"id": 1, "status": "open", "created_at": "2026-03-01T09:00:00Z", "updated_at": 100},
    {"id": 2, "status": "resolved", "created_at": "2026-03-02T10:00:00Z", "updated_at": 200},
    {"id": 3, "status": "pending", "created_at": "2026-03-03T11:00:00Z", "updated_at": 300},
]

TINYMOD = '''
"""tinydesk: the smallest connector there is (one stream, one endpoint, a `since` cursor)."""

from connectors.base import Page, StreamSpec
from connectors.http import HttpClient
from connectors.plugin import ConnectorPlugin
from connectors.settings import ConnectorSettings


class TinySettings(ConnectorSettings):
    token: str = ""


STREAMS = (StreamSpec("tickets", ("contacts",), "every ticket changed since the cursor"),)


class TinyConnector:
    name = "tinydesk"

    def __init__(self, settings):
        self.client = HttpClient("tinydesk", settings.base_url, headers={"Authorization": "Bearer " + settings.token},
                                 timeout=settings.timeout_seconds, max_attempts=settings.max_attempts)

    def streams(self):
        return STREAMS

    def read(self, stream, cursor, full=False):
        since = 0 if full or cursor is None else int(cursor)
        body = self.client.get("/tickets", params={"since": since}).data
        page = Page(cursor=str(max([since] + [t["updated_at"] for t in body["tickets"]])))
        for t in body["tickets"]:
            page.add("contacts", {"source": "tinydesk", "source_id": str(t["id"]), "channel": "email",
                                  "status": t["status"], "created_at": t["created_at"]})
        yield page

    @property
    def api_calls(self):
        return self.client.calls

    @property
    def call_counts(self):
        return self.client.counts

    def close(self):
        self.client.close()


PLUGIN = ConnectorPlugin(name="tinydesk", title="Tinydesk", settings=TinySettings, connector=TinyConnector)
'''


class TinyApi:
    """GET /tickets?since=N with a bearer token, on 127.0.0.1; logs what it was asked."""

    def __init__(self) -> None:
        self.asked: list[dict[str, list[str]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._answer(401, {"error": "unauthorized"})
                elif url.path != "/tickets":
                    self._answer(404, {"error": "not found"})
                else:
                    query = parse_qs(url.query)
                    api.asked.append(query)
                    since = int(query.get("since", ["0"])[0])
                    self._answer(200, {"tickets": [t for t in TICKETS if t["updated_at"] > since]})

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tiny_api() -> Iterator[TinyApi]:
    api = TinyApi()
    yield api
    api.stop()


@pytest.fixture
def tinydesk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tmp_path/plugins holds the package `tinymod` and the distribution that registers it; it is on sys.path."""
    site = tmp_path / "plugins"
    site.mkdir()
    (site / "tinymod.py").write_text(TINYMOD)
    dist = site / "tinydesk_connector-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinydesk-connector\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[helpdesk_kpi.connectors]\ntinydesk = tinymod:PLUGIN\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    registry.plugins.cache_clear()
    yield site
    registry.plugins.cache_clear()
    sys.modules.pop("tinymod", None)


def write_config(tmp_path: Path, api: TinyApi) -> Path:
    config = tmp_path / "helpdesk-kpi.toml"
    config.write_text(textwrap.dedent(f"""\
        [store]
        path = "{tmp_path / 'store.sqlite'}"

        [connectors.tinydesk]
        base_url = "{api.base_url}"
        token = "{TOKEN}"
        """))
    os.chmod(config, 0o600)
    return config


def cli(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path}
    env = {k: v for k, v in env.items() if not k.startswith("HELPDESK_KPI_")}
    return subprocess.run([sys.executable, "-c", "import sys; from kpi_core.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.slow  # three CLI subprocesses
def test_an_entry_point_connector_is_registered_validated_synced_and_shown(tinydesk: Path, tiny_api: TinyApi,
                                                                           tmp_path: Path) -> None:
    found = registry.plugins()
    assert "tinydesk" in found and found["tinydesk"].title == "Tinydesk"
    assert list(found)[: len(registry.BUILT_IN)] == list(registry.BUILT_IN)  # the built-in ones keep their place

    config = write_config(tmp_path, tiny_api)
    settings = load_settings(config)
    tiny = settings.enabled_connectors()["tinydesk"]
    assert type(tiny).__name__ == "TinySettings" and tiny.base_url == tiny_api.base_url

    synced = cli(tinydesk, "sync", "--config", str(config))
    assert synced.returncode == 0, synced.stderr
    assert "tinydesk: ok" in synced.stdout
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        stored = db.execute("SELECT source_id, status, created_at FROM contacts WHERE source = 'tinydesk'"
                            " ORDER BY source_id").fetchall()
        assert stored == [(str(t["id"]), t["status"], t["created_at"]) for t in TICKETS]
        assert db.execute("SELECT cursor FROM cursors WHERE source = 'tinydesk' AND stream = 'tickets'").fetchall() \
            == [("300",)]

    again = cli(tinydesk, "sync", "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert [q["since"] for q in tiny_api.asked] == [["0"], ["300"]]  # the second sync starts from the bookmark

    status = cli(tinydesk, "status", "--config", str(config), "--format", "json")
    assert status.returncode == 0, status.stderr
    assert "tinydesk" in status.stdout
    table = cli(tinydesk, "status", "--config", str(config))
    assert table.returncode == 0 and "tinydesk" in table.stdout


def test_without_the_distribution_its_table_is_refused(tmp_path: Path, tiny_api: TinyApi) -> None:
    registry.plugins.cache_clear()
    assert "tinydesk" not in registry.plugins()
    with pytest.raises(Exception, match="tinydesk"):
        load_settings(write_config(tmp_path, tiny_api))
