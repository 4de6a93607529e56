"""Report benchmark: size and generation time of the HTML report over a store of 200,000 contacts.

    .venv/bin/python bench/report.py [--contacts 200000] [--store PATH] [--out FILE.html] [--keep]

The store is filled the way bench/kpis.py fills it (its `generate`: a year of contacts with
messages, status events, CSAT/NPS answers, tags, 3 sources x 120 agents, written straight
into SQLite with bulk inserts), because syncing 200,000 tickets through the fake APIs
measures the connectors, not the report. Then, each in a fresh process so imports and peak
RSS are the phase's own:
- a cold report: nothing computed yet, so the report computes the monthly periods it shows;
- `compute` with the default settings (every grain and segmentation over 13 months);
- a warm report: every value it shows is already stored.
The report covers the last 6 months of the data at month grain (`report --until 2026-01-01`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)  # bench/kpis.py writes the year 2025


def _kpi_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_kpis", ROOT / "bench" / "kpis.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _settings(store: Path) -> Any:
    from kpi_core.settings import Settings

    return Settings(store={"path": str(store)})


def phase_report(store_path: Path, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    from kpi_core.report import gather, render_html
    from kpi_core.store import open_store

    imported = time.perf_counter()
    store = open_store(store_path)
    data = gather(store, _settings(store_path), period="month", until=NOW.date(), now=NOW)
    gathered = time.perf_counter()
    page = render_html(data).encode("utf-8")
    rendered = time.perf_counter()
    store.close()
    out.write_bytes(page)
    return {"seconds": round(rendered - started, 2), "import_seconds": round(imported - started, 2),
            "gather_seconds": round(gathered - imported, 2), "render_seconds": round(rendered - gathered, 2),
            "bytes": len(page), "charts": page.count(b"<svg"), "agents": len(data.agents),
            "languages": len(data.languages), "diagnostics": sum(len(d.findings) for d in data.diagnostics),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def phase_compute(store_path: Path) -> dict[str, Any]:
    from kpi_core.kpis.api import compute
    from kpi_core.store import open_store

    store = open_store(store_path)
    started = time.perf_counter()
    summary = compute(store, _settings(store_path), now=NOW)
    seconds = time.perf_counter() - started
    store.close()
    return {"seconds": round(seconds, 2), "values": summary.values_written,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def run_phase(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--store", type=Path, help="reuse (or keep) this store")
    parser.add_argument("--out", type=Path, help="where to write the report (default: beside the store)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the generated store")
    parser.add_argument("--phase", choices=["report", "compute"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "report":
        print(json.dumps(phase_report(args.store, args.out)))
        return
    if args.phase == "compute":
        print(json.dumps(phase_compute(args.store)))
        return
    path = args.store or Path(tempfile.mkdtemp(prefix="bench-report-")) / "store.sqlite"
    out = args.out or path.with_name("report.html")
    result: dict[str, Any] = {"contacts": args.contacts}
    if not path.exists():
        result["generate"] = _kpi_bench().generate(path, args.contacts, args.seed)
        print("generated:", json.dumps(result["generate"]), flush=True)
    result["cold_report"] = run_phase("--phase", "report", "--store", str(path), "--out", str(out))
    print("report, nothing computed yet:", json.dumps(result["cold_report"]), flush=True)
    result["compute"] = run_phase("--phase", "compute", "--store", str(path))
    print("compute (default settings):", json.dumps(result["compute"]), flush=True)
    result["warm_report"] = run_phase("--phase", "report", "--store", str(path), "--out", str(out))
    print("report, values stored:", json.dumps(result["warm_report"]), flush=True)
    print(f"report: {out} ({result['warm_report']['bytes']:,} bytes)")
    if not args.keep and not args.store:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
