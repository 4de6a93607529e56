"""`helpdesk-kpi report --out FILE.html`: the self-contained HTML report (of one account, or with `--account`
several accounts of a PostgreSQL store side by side)."""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path
from typing import Any

from kpi_core.cli_common import EXIT_OK, UsageError, command, date_range, out, settings_from, store_from
from kpi_core.cli_kpis import bring_up_to_date
from kpi_core.kpis.accounts import AccountError, chosen_accounts
from kpi_core.kpis.catalogue import UnknownKpi
from kpi_core.kpis.periods import PeriodError
from kpi_core.kpis.segments import SegmentError
from kpi_core.settings import Settings
from kpi_core.store import Store


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
        if args.account:  # every account as its daemon stored it: nothing computed, so a timer may run it any time
            return _report_of_accounts(args, settings, store, target, since, until)
        bring_up_to_date(store, settings)  # the report shows what the store holds now, not the last compute
        result = write_report(store, settings, target, period=args.period, since=since, until=until)
    except (PeriodError, SegmentError, UnknownKpi, AccountError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        store.close()
    window = result.data.window
    what = "no data yet" if result.data.empty else f"{window.grain.value} {window.current.label()}"
    out(f"{target}: {result.bytes:,} bytes ({what}; {len(window.periods)} periods of trends) in {result.seconds:.1f}s")
    return EXIT_OK


def _report_of_accounts(args: argparse.Namespace, settings: Settings, store: Store, target: Path,
                        since: date | None, until: date | None) -> int:
    """`report --account`: the accounts side by side, from the values each account's daemon stored."""
    from kpi_core.report import write_page
    from kpi_core.report.accounts import gather_accounts, render_accounts

    started = time.perf_counter()
    wanted = chosen_accounts(store, settings, args.account)
    data = gather_accounts(str(settings.store.location), wanted, settings, period=args.period, since=since,
                           until=until)
    size = write_page(render_accounts(data), target)
    out(f"{target}: {size:,} bytes ({len(data.accounts)} accounts; {data.window.grain.value}"
        f" {data.window.current.label()}, {len(data.trends)} periods of trends)"
        f" in {time.perf_counter() - started:.1f}s")
    return EXIT_OK


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("report", parents=[common], help=cmd_report.__doc__)
    p.add_argument("--out", required=True, help="the HTML file to write (replaced atomically)")
    p.add_argument("--period", choices=("day", "week", "month", "quarter"), default="month",
                   help="grain of the scorecard and the trend charts (default: month)")
    p.add_argument("--since", help="first day of the trends, YYYY-MM-DD (UTC; default: the last few periods)")
    p.add_argument("--until", help="end of the report, exclusive, YYYY-MM-DD (UTC; default: tomorrow, so today"
                                   " is in); the scorecard is the period holding the day before it")
    p.add_argument("--account", help="a PostgreSQL store's accounts side by side: NAME[,NAME] or all; the values"
                                     " each account's daemon stored, one row and one trend line per account")

