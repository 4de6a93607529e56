"""Health of each source, read from the store's run log: for `status` and monitoring."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from kpi_core.settings import Settings
from kpi_core.store import Store


def _parse(ts: str | None) -> datetime | None:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) if ts else None


def collect(store: Store, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Per enabled source: last success, lag, cursors, records, API calls, last error."""
    now = now or datetime.now(timezone.utc)
    sources: dict[str, Any] = {}
    for name in settings.connectors.enabled():
        last_ok = store.last_run(name, status="ok")
        last = store.last_run(name)
        ok_at = _parse(last_ok.ended_at) if last_ok else None
        sources[name] = {
            "last_success_at": last_ok.ended_at if last_ok else None,
            "lag_seconds": int((now - ok_at).total_seconds()) if ok_at else None,
            "cursors": store.cursors(name),
            "records": store.count("contacts", name),
            "api_calls_last_run": last.api_calls if last else 0,
            "last_run_status": last.status if last else None,
            "last_error": last.error if last and last.status == "failed" else None,
            "quarantined": int(store.db.execute(
                "SELECT count(*) FROM quarantine WHERE source = ?", [name]).fetchone()[0]),
        }
    return {"generated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "sources": sources}


def lagging(report: dict[str, Any], max_lag: timedelta) -> list[str]:
    """Sources that never synced or whose last success is older than `max_lag`."""
    limit = max_lag.total_seconds()
    return [name for name, s in report["sources"].items() if s["lag_seconds"] is None or s["lag_seconds"] > limit]


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def format_table(report: dict[str, Any]) -> str:
    header = ("source", "last success (UTC)", "lag", "records", "API calls", "quarantined", "last error")
    rows = [header]
    for name, s in report["sources"].items():
        rows.append((name, s["last_success_at"] or "never", _age(s["lag_seconds"]), f"{s['records']:,}",
                     f"{s['api_calls_last_run']:,}", str(s["quarantined"]), (s["last_error"] or "")[:80]))
    if len(rows) == 1:
        return "no source is enabled"
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
