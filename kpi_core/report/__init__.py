"""The HTML report: one self-contained page (no external resource) with the scorecard, trends and health.

    html = build_report(store, settings, period="month")
    result = write_report(store, settings, Path("report.html"))
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from kpi_core.report.gather import ReportData, gather
from kpi_core.report.render import render_html
from kpi_core.settings import Settings
from kpi_core.store import Store

__all__ = ["ReportData", "ReportFile", "build_report", "gather", "render_html", "write_page", "write_report"]


@dataclass(frozen=True)
class ReportFile:
    path: Path
    bytes: int
    seconds: float
    data: ReportData


def build_report(store: Store, settings: Settings, *, period: str | None = None, since: date | None = None,
                 until: date | None = None, now: datetime | None = None) -> str:
    """The report as an HTML document (KPI periods missing from the store are computed first)."""
    return render_html(gather(store, settings, period=period, since=since, until=until, now=now))


def write_report(store: Store, settings: Settings, out: Path, *, period: str | None = None,
                 since: date | None = None, until: date | None = None, now: datetime | None = None) -> ReportFile:
    """Write the report to `out` atomically (a reader never sees half a page)."""
    started = time.perf_counter()
    data = gather(store, settings, period=period, since=since, until=until, now=now)
    size = write_page(render_html(data), out)
    return ReportFile(out, size, round(time.perf_counter() - started, 3), data)


def write_page(html: str, out: Path) -> int:
    """Replace `out` with the page in one step (temp file in the same folder, then rename); returns its bytes.

    The folder must exist: a typo in `--out` or `[schedule] report_path` fails instead of creating folders.
    """
    page = html.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(page)
        os.chmod(tmp, 0o644)  # aggregated figures, made to be shared (mkstemp would leave 0600)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(page)
