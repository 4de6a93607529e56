"""Orders from any shop system's CSV export (`helpdesk-kpi orders import`), re-importable without duplicates.

A column mapping names which file column holds each order field; the defaults cover common
exports (Shopify's own order export among them), and `--map COLUMN=FIELD` adds or overrides.
An order may span several rows, one per line item, as shop exports do: the first row with the
order id carries the order's fields, every row may add a line item (SKU, quantity) and a refund.
Each order is upserted by (source, order id), so importing a file again changes nothing, and a
newer export of the same orders updates them.

Customers are matched as the Shopify connector matches them: the e-mail becomes its keyed hash
([privacy] hash_key, the one people.email_hash holds) and is never stored; an explicit customer-id
map (shop customer id -> helpdesk "source:requester_id") fills `requester`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kpi_core.csv_files import CsvFileError, number_text, read_text
from kpi_core.model import RecordError, email_hash, iso_utc
from kpi_core.store import Store

FIELDS = ("order_id", "created_at", "updated_at", "email", "customer_id", "total", "currency", "cancelled_at",
          "refund_amount", "refunded_at", "sku", "quantity")
REQUIRED = ("order_id", "created_at", "total")

# field -> the column names that hold it in common exports (compared lowercased, `_` and `-` as spaces),
# in order of preference.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "order_id": ("order id", "id", "order number", "order", "name"),
    "created_at": ("created at", "order date", "created", "date"),
    "updated_at": ("updated at", "modified at"),
    "email": ("email", "customer email", "e mail"),
    "customer_id": ("customer id", "customer number"),
    "total": ("total", "order total", "total price", "grand total", "amount"),
    "currency": ("currency", "currency code"),
    "cancelled_at": ("cancelled at", "canceled at"),
    "refund_amount": ("refunded amount", "refund amount", "refunded", "refund"),
    "refunded_at": ("refunded at", "refund date", "refund at"),
    "sku": ("lineitem sku", "line item sku", "sku"),
    "quantity": ("lineitem quantity", "line item quantity", "quantity", "qty"),
}


class OrderFileError(ValueError):
    """A file (or option) that cannot be imported at all; one sentence naming the file, column or key."""


@dataclass
class ImportResult:
    rows: int = 0
    orders: int = 0
    matched: int = 0  # orders with a customer key or a mapped requester
    skipped: list[str] = field(default_factory=list)  # "file:line: column 'X': problem", one per skipped order


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    """`["Brutto=total", ...]` -> {field: column}; raises OrderFileError naming a bad pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        column, sep, name = pair.rpartition("=")
        name = name.strip()
        if not sep or not column.strip():
            raise OrderFileError(f"--map {pair}: expected COLUMN=FIELD, e.g. 'Brutto=total'")
        if name not in FIELDS:
            raise OrderFileError(f"--map {pair}: unknown field {name!r}; one of {', '.join(FIELDS)}")
        out[name] = column.strip()
    return out


def read_customer_map(path: Path) -> dict[str, str]:
    """shop customer id -> helpdesk requester "source:id", from a two-column CSV (a header line is allowed)."""
    try:
        table = read_text(path)
    except CsvFileError as exc:
        raise OrderFileError(str(exc)) from None
    out: dict[str, str] = {}
    for number, line in enumerate(table.text.splitlines(), 1):
        cells = [c.strip() for c in line.split(table.separator)]
        if not any(cells):
            continue
        valid = len(cells) == 2 and all(cells) and _is_requester(cells[1])
        if number == 1 and not valid:
            continue  # the header
        if not valid:
            raise OrderFileError(f"{path}:{number}: expected shop_customer_id{table.separator}source:requester_id,"
                                 " e.g. 4417,zendesk:3811")
        out[cells[0]] = cells[1]
    return out


def import_csv(store: Store, path: Path, *, source: str = "csv", mapping: Mapping[str, str] | None = None,
               hash_key: bytes | None = None, customer_map: Mapping[str, str] | None = None,
               currency: str | None = None) -> ImportResult:
    """Upsert the orders of `path`; returns what was stored and which orders were skipped, and why."""
    try:
        table = read_text(path)
    except CsvFileError as exc:
        raise OrderFileError(str(exc)) from None
    reader = table.reader()
    headers = [h for h in reader.fieldnames or [] if h is not None]
    columns = _columns(path, headers, mapping or {})
    if "email" in columns and hash_key is None:
        raise OrderFileError(f"{path}: column {columns['email']!r} holds e-mails, which are matched by their keyed"
                             " hash: set [privacy] hash_key (HELPDESK_KPI_PRIVACY__HASH_KEY) to the key the helpdesk"
                             " syncs use, or map no e-mail column")
    result = ImportResult()
    orders: dict[str, dict[str, Any]] = {}
    bad: dict[str, str] = {}
    for raw in reader:
        result.rows += 1
        line = reader.line_num
        cell = {name: (raw.get(column) or "").strip() for name, column in columns.items()}
        order_id = cell.get("order_id", "")
        if not order_id:
            result.skipped.append(f"{path}:{line}: column {columns['order_id']!r}: no order id")
            continue
        if order_id in bad:
            continue
        try:
            _add_row(orders.setdefault(order_id, {"lines": [], "refunds": [], "line": line}), cell, table.separator)
        except RecordError as exc:
            name = str(exc).split(":", 1)[0]
            bad[order_id] = f"{path}:{line}: column {columns.get(name, name)!r}: {str(exc).split(': ', 1)[-1]}"
    rows = []
    for order_id, order in orders.items():
        if order_id in bad:
            continue
        try:
            rows.append(_record(order_id, order, source, hash_key, customer_map or {}, currency))
        except RecordError as exc:
            name = str(exc).split(":", 1)[0]
            bad[order_id] = (f"{path}:{order['line']}: column {columns.get(name, name)!r}:"
                             f" {str(exc).split(': ', 1)[-1]}")
    result.skipped.extend(f"{problem} (order {oid} skipped)" for oid, problem in bad.items())
    with store.db.atomic():
        result.orders = store.upsert("orders", rows)
    result.matched = sum(1 for r in rows if r["customer_key"] or r["requester"])
    return result


def _columns(path: Path, headers: list[str], mapping: Mapping[str, str]) -> dict[str, str]:
    """field -> the file's column holding it: the explicit mapping first, then the defaults."""
    by_key = {_key(h): h for h in reversed(headers)}  # the first of two equal headers wins
    out: dict[str, str] = {}
    for name, column in mapping.items():
        found = column if column in headers else by_key.get(_key(column))
        if found is None:
            raise OrderFileError(f"{path}: --map {column}={name}: no column {column!r}"
                                 f" (columns: {', '.join(headers) or 'none'})")
        out[name] = found
    taken = set(out.values())
    for name, candidates in DEFAULT_COLUMNS.items():
        if name in out:
            continue
        found = next((by_key[_key(c)] for c in candidates if _key(c) in by_key and by_key[_key(c)] not in taken), None)
        if found is not None:
            out[name] = found
            taken.add(found)
    missing = [n for n in REQUIRED if n not in out]
    if missing:
        raise OrderFileError(f"{path}: no column for {', '.join(missing)} (columns: {', '.join(headers) or 'none'});"
                             " name it with --map COLUMN=FIELD")
    if "email" not in out and "customer_id" not in out:
        raise OrderFileError(f"{path}: no e-mail or customer id column, so no order could be matched to a customer;"
                             " name one with --map COLUMN=email or --map COLUMN=customer_id")
    return out


def _key(header: str) -> str:
    return re.sub(r"[\s_\-]+", " ", header.strip().lower())


def _add_row(order: dict[str, Any], cell: Mapping[str, str], separator: str) -> None:
    """Fold one row into its order: order fields from the first row that has them, a line item, a refund."""
    for name in ("created_at", "updated_at", "cancelled_at", "email", "customer_id", "currency"):
        if cell.get(name) and not order.get(name):
            order[name] = _time(name, cell[name]) if name.endswith("_at") else cell[name]
    if cell.get("total") and order.get("total") is None:
        order["total"] = _number("total", cell["total"], separator)
    if cell.get("sku") or cell.get("quantity"):
        quantity = _number("quantity", cell.get("quantity") or "1", separator)
        if quantity != int(quantity):
            raise RecordError(f"quantity: not a whole number: {cell.get('quantity')!r}")
        order["lines"].append({"sku": cell.get("sku") or None, "quantity": int(quantity)})
    if cell.get("refund_amount"):
        amount = abs(_number("refund_amount", cell["refund_amount"], separator))
        at = _time("refunded_at", cell["refunded_at"]) if cell.get("refunded_at") else None
        if amount and (at, amount) not in [(r["at"], r["amount"]) for r in order["refunds"]]:
            order["refunds"].append({"at": at, "amount": amount})


def _record(order_id: str, order: Mapping[str, Any], source: str, hash_key: bytes | None,
            customer_map: Mapping[str, str], currency: str | None) -> dict[str, Any]:
    if order.get("created_at") is None:
        raise RecordError("created_at: no order date")
    if order.get("total") is None:
        raise RecordError("total: no order total")
    # A refund without its own date (Shopify's export gives only the amount) is dated at the
    # cancellation, else at the order's last change, else at the order.
    fallback = order.get("cancelled_at") or order.get("updated_at") or order["created_at"]
    refunds = sorted(({"at": r["at"] or fallback, "amount": r["amount"]} for r in order["refunds"]),
                     key=lambda r: str(r["at"]))
    address = order.get("email")
    customer_id = order.get("customer_id")
    return {
        "source": source,
        "source_id": order_id,
        "customer_key": email_hash(address, hash_key) if address and hash_key else None,
        "requester": customer_map.get(customer_id) if customer_id else None,
        "shop_customer_id": customer_id,
        "created_at": order["created_at"],
        "updated_at": order.get("updated_at"),
        "cancelled_at": order.get("cancelled_at"),
        "currency": (order.get("currency") or currency or "").upper() or None,
        "total": order["total"],
        "refunds": refunds,
        "lines": order["lines"],
        "raw": {"imported_from": "csv"},
    }


def _number(name: str, text: str, separator: str) -> float:
    cleaned = number_text(text.replace(" ", ""), separator)
    cleaned = re.sub(r"^[^\d\-+.]+|[^\d.]+$", "", cleaned)  # a currency sign or code around the amount
    try:
        value = float(cleaned)
    except ValueError:
        raise RecordError(f"{name}: not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise RecordError(f"{name}: not a number: {text!r}")
    return value


_OFFSET = re.compile(r"\s+([+-]\d{2}):?(\d{2})$")


def _time(name: str, text: str) -> str:
    """A time as exports write it ("2026-03-01 10:15:00 +0100", ISO, a bare date) -> ISO UTC."""
    normalized = _OFFSET.sub(r"\1:\2", text.strip()).replace(" UTC", "+00:00")
    try:
        value = iso_utc(normalized)
    except RecordError:
        raise RecordError(f"{name}: not a date and time: {text!r}") from None
    if value is None:
        raise RecordError(f"{name}: not a date and time: {text!r}")
    return value


def _is_requester(text: str) -> bool:
    source, _, ident = text.partition(":")
    return bool(source.strip() and ident.strip())
