"""`helpdesk-kpi orders import FILE.csv`: a shop's orders from a CSV export (re-importable)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kpi_core import orders_import
from kpi_core.cli_common import EXIT_FAILED, EXIT_OK, UsageError, command, err, out, settings_from, store_from


@command("orders")
def cmd_orders(args: argparse.Namespace) -> int:
    """Import a shop's orders from a CSV export, matched to helpdesk customers by keyed e-mail hash."""
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    settings = settings_from(args)
    try:
        mapping = orders_import.parse_mapping(args.map or [])
        customer_map = orders_import.read_customer_map(Path(args.customer_map)) if args.customer_map else {}
    except orders_import.OrderFileError as exc:
        raise UsageError(str(exc)) from None
    store = store_from(settings)
    try:
        result = orders_import.import_csv(store, path, source=args.source, mapping=mapping,
                                          hash_key=settings.privacy.hash_key_bytes(), customer_map=customer_map,
                                          currency=args.currency)
    except orders_import.OrderFileError as exc:
        raise UsageError(str(exc)) from None
    finally:
        store.close()
    for problem in result.skipped:
        err(f"skipped {problem}")
    out(f"{path}: {result.orders:,} orders stored from {result.rows:,} rows as source {args.source!r}"
        f" ({result.matched:,} with a customer to match, {len(result.skipped):,} skipped)")
    return EXIT_OK if not result.skipped else EXIT_FAILED


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("orders", parents=[common], help=cmd_orders.__doc__)
    verbs = p.add_subparsers(dest="action", metavar="ACTION", required=True, help="import: read a CSV file")
    # --config before or after the action: the action's own default must not overwrite one given before it.
    inner = argparse.ArgumentParser(add_help=False)
    inner.add_argument("--config", default=argparse.SUPPRESS,
                       help="config file (default: $HELPDESK_KPI_CONFIG, else ./helpdesk-kpi.toml)")
    inner.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    i = verbs.add_parser("import", parents=[inner], help="upsert the orders of a CSV file (by source and order id)")
    i.add_argument("file", help="the CSV export: one row per order, or per line item")
    i.add_argument("--source", default="csv", help="the shop's name, stored as the orders' source (default csv)")
    i.add_argument("--map", action="append", metavar="COLUMN=FIELD",
                   help=f"the file's COLUMN holds FIELD (one of {', '.join(orders_import.FIELDS)}); repeatable")
    i.add_argument("--customer-map", metavar="FILE",
                   help="a CSV of shop customer id -> helpdesk requester 'source:id' (matches without e-mail)")
    i.add_argument("--currency", help="the currency of rows that name none (ISO code, e.g. EUR)")
