"""What every connector does to a vendor record: read its ids and times, and quarantine it when it does not fit.

One error taxonomy: a record whose fields lack the documented type or value raises
`RecordError` (the field readers here), or any of `BAD_RECORD` (a `KeyError` for a missing
key, a `TypeError` from a field of unexpected shape), and `keep` catches exactly those, in
one place, for every connector. Errors of the API itself (`SyncError`s: a bad token, a
truncated page) are not record problems and pass through to stop the sync.

A rejected record is named `<object>/<id>`, e.g. `ticket/123` or `conversation/456`: the
vendor's object and its id as the API gives it, `?` when the id itself is unreadable. The
object tells ids of different lists apart within one stream's quarantine.

Reasons name the field and the type found, never the value: a value of the wrong type may
be anything, a name or an address, and the quarantine table is kept in the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from connectors.base import Page
from kpi_core.model import RECORD_TYPES, RecordError, check_record, iso_utc

Row = dict[str, Any]
# Every record-level failure: ours (RecordError, a ValueError) and what Python raises on a
# payload of unexpected shape (a missing key, an int where an object was expected, ...).
BAD_RECORD: tuple[type[Exception], ...] = (RecordError, KeyError, TypeError, ValueError, AttributeError)

_ISO_Z = re.compile(r"\d{4}-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-6]\dZ")
_is_store_time = _ISO_Z.fullmatch


# --- the quarantine guard ------------------------------------------------------------------


def keep(page: Page, kind: str, item: Any, rows: Callable[[Row], Iterable[tuple[str, Row]]]) -> bool:
    """Add every row `rows(item)` yields to `page`, or none of them and quarantine the record.

    The rows are checked before any is added, so a record is stored whole or not at all
    (a ticket without its messages would read as a ticket nobody answered). Returns
    whether the record was kept.
    """
    try:
        if not isinstance(item, dict):
            raise RecordError(f"expected an object, got {type(item).__name__}")
        # Staged in a plain list: this runs for every record of every page.
        staged = list(rows(item))
        for table, row in staged:
            check_record(RECORD_TYPES[table], row)
    except BAD_RECORD as exc:
        page.reject(rejected_id(kind, item), reason(exc))
        return False
    for table, row in staged:
        page.add_checked(table, row)
    return True


def keep_row(page: Page, kind: str, item: Any, table: str, build: Callable[[Row], Row | None]) -> bool:
    """`keep` for a record that makes one row of `table` (None from `build`: nothing to store)."""
    try:
        if not isinstance(item, dict):
            raise RecordError(f"expected an object, got {type(item).__name__}")
        row = build(item)
        if row is not None:
            check_record(RECORD_TYPES[table], row)
    except BAD_RECORD as exc:
        page.reject(rejected_id(kind, item), reason(exc))
        return False
    if row is not None:
        page.add_checked(table, row)
    return True


def rejected_id(kind: str, item: Any) -> str:
    """`<object>/<id>` (see the module docstring); `?` stands for an id that cannot be read."""
    ident = item.get("id") if isinstance(item, dict) else None
    readable = isinstance(ident, (int, str)) and not isinstance(ident, bool) and ident != ""
    return f"{kind}/{ident if readable else '?'}"


def reason(exc: BaseException) -> str:
    """Why a record was quarantined, in words an operator can act on."""
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]!r}" if exc.args else "missing key"
    return str(exc) or type(exc).__name__


# --- ids -------------------------------------------------------------------------------------


def record_id(value: Any, field: str = "id") -> str:
    """An id as text: a vendor sends integers or non-empty strings (never booleans)."""
    if type(value) is int:  # the hot path: most ids are integers
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise RecordError(f"{field} should be an id, got {_kind(value)}")


def opt_id(value: Any, field: str = "id") -> str | None:
    """An optional reference: None (or an empty string) is no reference."""
    return None if value is None or value == "" else record_id(value, field)


def opt_str(value: Any, field: str = "value") -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise RecordError(f"{field} should be text, got {_kind(value)}")


def flag(value: Any, field: str = "value") -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"{field} should be true or false, got {_kind(value)}")
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- times -----------------------------------------------------------------------------------


def iso_time(value: Any, field: str = "time") -> str:
    """A required time, ISO text or epoch seconds, as the store's ISO UTC text (`...Z`)."""
    if type(value) is str and _is_store_time(value):
        return value  # the hot path (as in `opt_iso_time`), one call less: every record has a time or two
    result = opt_iso_time(value, field)
    if result is None:
        raise RecordError(f"{field} is missing")
    return result


def opt_iso_time(value: Any, field: str = "time") -> str | None:
    """An optional time (None or "" -> None), ISO text or epoch seconds, as ISO UTC text."""
    if isinstance(value, str) and _is_store_time(value):
        return value  # the hot path: already the store's form
    if value is not None and not isinstance(value, str) and not is_number(value):
        raise RecordError(f"{field} should be a time, got {_kind(value)}")
    try:
        return iso_utc(value)
    except (RecordError, OverflowError, OSError):
        raise RecordError(f"{field} is not a timestamp") from None


def epoch_time(value: Any, field: str = "time") -> str:
    """A required time the vendor sends as epoch seconds only (Intercom), as ISO UTC text."""
    if not is_number(value):
        raise RecordError(f"{field} should be an epoch timestamp, got {_kind(value)}")
    return iso_time(value, field)


def opt_epoch_time(value: Any, field: str = "time") -> str | None:
    return None if value is None else epoch_time(value, field)


def epoch_of(iso: str) -> int:
    """Seconds since the epoch of the store's ISO UTC text."""
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def iso_of(epoch: float) -> str:
    """The store's ISO UTC text of epoch seconds (fractions dropped)."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if value == "":
        return "an empty string"
    return type(value).__name__

