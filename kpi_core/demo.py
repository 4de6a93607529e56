"""`helpdesk-kpi demo`: the whole product on the sandbox, end to end, in one command."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from connectors.sandbox import Sandbox
from kpi_core.settings import load_settings
from kpi_core.store import open_store
from kpi_core.sync import sync_all

Say = Callable[[str], None]


def run(workdir: Path, *, tickets: int, seed: int, say: Say, warn: Say) -> int:
    """Start the sandbox, sync every helpdesk, compute and show the KPIs. Returns an exit code."""
    workdir.mkdir(parents=True, exist_ok=True)
    say(f"Generating a sandbox of {tickets:,} tickets across Zendesk, Intercom and Freshdesk...")
    sandbox = Sandbox.generate(seed=seed, tickets=tickets)
    urls = sandbox.start()
    try:
        for name, url in urls.items():
            say(f"  fake {name} at {url}")
        config = workdir / "helpdesk-kpi.toml"
        store_path = (workdir / "helpdesk-kpi.sqlite").resolve()
        for suffix in ("", "-wal", "-shm"):
            Path(str(store_path) + suffix).unlink(missing_ok=True)  # each demo starts from an empty store
        config.write_text(sandbox.config_toml(str(store_path)))
        os.chmod(config, 0o600)
        settings = load_settings(config)
        store = open_store(settings.store.path)
        try:
            say("Syncing...")
            results = sync_all(store, settings)
            for r in results:
                if r.ok:
                    say(f"  {r.source}: {r.records:,} records, {r.api_calls:,} API calls")
                else:
                    warn(f"  {r.source}: FAILED: {r.error}")
        finally:
            store.close()
        say(f"Config: {config}   Store: {store_path}")
        return 0 if all(r.ok for r in results) else 1
    finally:
        sandbox.stop()

