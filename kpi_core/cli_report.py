"""`helpdesk-kpi report --out FILE.html`: the self-contained HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kpi_core.cli_common import EXIT_OK, UsageError, command, date_range, out, settings_from, store_from
from kpi_core.cli_kpis import bring_up_to_date
from kpi_core.kpis.catalogue import UnknownKpi
from kpi_core.kpis.periods import PeriodError
from kpi_core.kpis.segments import SegmentError


@command("report")
def cmd_report(args: argparse.Namespace) -> int:
    """Write a self-contained HTML report: scorecard, trends, diagnostics, languages, agents, sync health."""
    from kpi_core.report import write_report  # late: matplotlib and Jinja2 load only for this command

    settings = settings_from(args)
    since, until = date_range(args)
    target = Path(args.out)
    if target.is_dir():
        raise UsageError(f"--out {target}: is a directory; give a file name such as report.html")
    if not target.parent.is_dir():  # a typo in the path must not create folders silently
        raise UsageError(f"--out {target}: the folder {target.parent} does not exist; create it first")
    store = store_from(settings)
    try:
        bring_up_to_date(store, settings)  # the report shows what the store holds now, not the last compute
        result = write_report(store, settings, target, period=args.period, since=since, until=until)
    except (PeriodError, SegmentError, UnknownKpi) as exc:
        raise UsageError(str(exc)) from None
    finally:
        store.close()
    window = result.data.window
    what = "no data yet" if result.data.empty else f"{window.grain.value} {window.current.label()}"
    out(f"{target}: {result.bytes:,} bytes ({what}; {len(window.periods)} periods of trends) in {result.seconds:.1f}s")
    return EXIT_OK


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report", parents=[common], help=cmd_report.__doc__)
    p.add_argument("--out", required=True, help="the HTML file to write (replaced atomically)")
    p.add_argument("--period", choices=("day", "week", "month", "quarter"), default="month",
                   help="grain of the scorecard and the trend charts (default: month)")
    p.add_argument("--since", help="first day of the trends, YYYY-MM-DD (UTC; default: the last few periods)")
    p.add_argument("--until", help="end of the report, exclusive, YYYY-MM-DD (UTC; default: tomorrow, so today"
                                   " is in); the scorecard is the period holding the day before it")

