"""Health of each source, read from the store's run log, and of the daemon's jobs: for `status` and monitoring.

Works whether or not a daemon runs: the store says what was synced; the daemon's state
file beside it (`kpi_core.daemon_state`) says what it plans next; the lock file names its pid.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from kpi_core import backfill
from kpi_core.daemon_state import read_state, state_path_for
from kpi_core.kpis.scales import positive_sql
from kpi_core.lock import running_daemon
from kpi_core.settings import Settings
from kpi_core.store import Store
from kpi_core.writeback import ledger as writeback_ledger


def _parse(ts: str | None) -> datetime | None:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) if ts else None


def quarantine_count(store: Store, source: str) -> int:
    return int(store.db.execute("SELECT count(*) FROM quarantine WHERE source = ?", [source]).fetchone()[0])


def failures_since_success(store: Store, source: str) -> int:
    """Failed syncs of `source` after its last successful one (0 when healthy)."""
    return int(store.db.execute(
        "SELECT count(*) FROM sync_runs WHERE source = ? AND status = 'failed' AND id >"
        " coalesce((SELECT max(id) FROM sync_runs WHERE source = ? AND status = 'ok'), 0)",
        [source, source]).fetchone()[0])


def undecided_csat(store: Store, source: str, stated: dict[str, str]) -> list[dict[str, Any]]:
    """CSAT answers of `source` whose positivity cannot be decided, per scale seen (catalogue 2c): they count in
    no CSAT KPI until the admin states the scale (`[kpis] csat_scales`)."""
    rows = store.db.execute(
        f"SELECT s.scale, count(*), min(s.score), max(s.score) FROM survey_responses s WHERE s.source = ?"
        f" AND s.kind = 'csat' AND {positive_sql('s', stated)} IS NULL GROUP BY s.scale ORDER BY count(*) DESC",
        [source]).fetchall()
    return [{"scale": scale, "responses": n, "lowest_score": low, "highest_score": high}
            for scale, n, low, high in rows]


def collect(store: Store, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Per enabled source: last success, lag, cursors, records, API calls, errors, next sync; the daemon's jobs."""
    now = now or datetime.now(timezone.utc)
    daemon = daemon_report(settings)
    jobs = daemon["jobs"]
    sources: dict[str, Any] = {}
    for name in settings.enabled_connectors():
        job = jobs.get(f"sync:{name}", {})
        sources[name] = {
            **source_health(store, name, now),
            "csat_undecided": undecided_csat(store, name, settings.kpis.csat_scales),
            "next_sync_at": job.get("next_run_at"),
            "backoff_seconds": job.get("backoff_seconds") or 0,
        }
    return {"generated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "sources": sources, "daemon": daemon,
            "writeback": writeback_ledger.status(store), "insight": insight_report(settings)}


def source_health(store: Store, name: str, now: datetime) -> dict[str, Any]:
    """What the store's run log says of one source: last success, lag, cursors, records, calls, errors."""
    last_ok = store.last_run(name, status="ok")
    last = store.last_run(name)
    ok_at = _parse(last_ok.ended_at) if last_ok else None
    return {
        "last_success_at": last_ok.ended_at if last_ok else None,
        "lag_seconds": int((now - ok_at).total_seconds()) if ok_at else None,
        "cursors": store.cursors(name),
        "records": store.count("contacts", name),
        "api_calls_last_run": last.api_calls if last else 0,
        "last_run_status": last.status if last else None,
        "last_error": last.error if last and last.status == "failed" else None,
        "warnings": last.warnings.splitlines() if last and last.warnings else [],
        "failures_since_success": failures_since_success(store, name),
        "quarantined": quarantine_count(store, name),
        "backfill": backfill.summary(store, name),
    }


def insight_report(settings: Settings) -> dict[str, Any]:
    """Whether conversation insight reads message text during the sync, and how many topic rules it applies."""
    topics = settings.insight.topics
    return {"enabled": settings.insight.enabled, "topics": sum(len(t) for t in topics.values()),
            "topic_languages": sorted(topics)}


def _insight_line(found: dict[str, Any] | None) -> str:
    if not found or not found["enabled"]:
        return "insight: off (message text is not read; [insight] enabled = true turns it on)"
    rules = (f"{found['topics']} topics for {', '.join(found['topic_languages'])}" if found["topics"]
             else "no topic rules")
    return f"insight: on (language, sentiment and topic of messages, read in memory during the sync; {rules})"


def daemon_report(settings: Settings) -> dict[str, Any]:
    """Whether a daemon runs on this store (its pid) and each job's last result and next run."""
    pid = running_daemon(settings.store.path)
    state = read_state(state_path_for(settings.store.path))
    jobs: dict[str, Any] = {}
    if state is not None:
        for job_id, job in sorted(state.jobs.items()):
            jobs[job_id] = {
                # A plan is only a plan while the daemon that made it runs.
                "next_run_at": job.next_run_at if pid == state.pid else None,
                "running": job.running and pid == state.pid,
                "last_started_at": job.last_started_at,
                "last_finished_at": job.last_finished_at,
                "last_result": job.last_result,
                "last_error": job.last_error,
                "consecutive_failures": job.consecutive_failures,
                "backoff_seconds": job.backoff_seconds if pid == state.pid else 0,
            }
    return {
        "running": pid is not None,
        "pid": pid,
        "started_at": state.started_at if state and pid == state.pid else None,
        "last_seen_at": state.updated_at if state else None,
        "jobs": jobs,
    }


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


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _next(job: dict[str, Any], daemon_running: bool) -> str:
    if job.get("running"):
        return "running"
    if job.get("next_run_at"):
        return str(job["next_run_at"])
    return "-" if daemon_running else "(no daemon)"


def _undecided_line(source: str, found: dict[str, Any]) -> str:
    scores = f"{found['lowest_score']:g}" if found["lowest_score"] == found["highest_score"] else (
        f"{found['lowest_score']:g} to {found['highest_score']:g}")
    return (f"{source}: {found['responses']:,} CSAT responses on scale {found['scale']!r} (scores {scores}) count in"
            f" no CSAT KPI: state their scale as [kpis.csat_scales] \"{source}:{found['scale']}\" = \"LOW-HIGH\"")


def _backfill_line(source: str, found: dict[str, Any]) -> str:
    """"zendesk: first sync complete back to 2025-03-01; filling older months (7 of 36 read, about 2h left)"."""
    eta = "" if found["eta_seconds"] is None else f", about {_age(int(found['eta_seconds']))} left"
    return (f"{source}: first sync complete back to {str(found['complete_back_to'])[:10]}; filling older months"
            f" ({found['windows_done']} of {found['windows_total']} read{eta})")


def format_table(report: dict[str, Any]) -> str:
    header = ("source", "last success (UTC)", "lag", "records", "API calls", "errors", "quarantined", "next sync",
              "last error")
    rows: list[tuple[str, ...]] = [header]
    daemon = report.get("daemon", {"running": False, "jobs": {}})
    for name, s in report["sources"].items():
        job = daemon["jobs"].get(f"sync:{name}", {})
        next_sync = _next(job, daemon["running"])
        if s.get("backoff_seconds"):
            next_sync += f" (backing off {_age(int(s['backoff_seconds']))})"
        rows.append((name, s["last_success_at"] or "never", _age(s["lag_seconds"]), f"{s['records']:,}",
                     f"{s['api_calls_last_run']:,}", str(s.get("failures_since_success", 0)), str(s["quarantined"]),
                     next_sync, (s["last_error"] or "")[:80]))
    if len(rows) == 1:
        return "no source is enabled"
    lines = _table(rows)
    for name, s in report["sources"].items():
        lines.extend(f"{name}: warning: {w}" for w in s.get("warnings") or ())
        lines.extend(_undecided_line(name, u) for u in s.get("csat_undecided") or ())
        if s.get("backfill") and not s["backfill"]["complete"]:
            lines.append(_backfill_line(name, s["backfill"]))
    lines.append(_insight_line(report.get("insight")))
    lines.append("")
    if daemon["running"]:
        lines.append(f"daemon: running (pid {daemon['pid']}, since {daemon['started_at'] or '?'})")
    else:
        seen = f"; last seen {daemon['last_seen_at']}" if daemon.get("last_seen_at") else ""
        lines.append(f"daemon: not running{seen}")
    if daemon["jobs"]:
        job_rows: list[tuple[str, ...]] = [
            ("job", "next run (UTC)", "last result", "last finished (UTC)", "failures in a row")]
        for job_id, job in daemon["jobs"].items():
            job_rows.append((job_id, _next(job, daemon["running"]), job["last_result"] or "-",
                             job["last_finished_at"] or "-", str(job["consecutive_failures"])))
        lines.append("")
        lines.extend(_table(job_rows))
    lines.extend(writeback_ledger.status_lines(report.get("writeback")))
    return "\n".join(lines)
