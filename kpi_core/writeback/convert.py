"""Metric values -> the values a field of a given type takes, and comparison with what a sync saw.

| metric | into a field of type | is written as |
|---|---|---|
| number (minutes, hours, %) | decimal / number | the number |
| | integer | rounded to the nearest whole number (halves up) |
| | text | its decimal string: `12.5`, `3` (no exponent, at most 6 decimals) |
| integer (counts) | integer, decimal | the number |
| | text | its decimal string |
| yes/no | checkbox / boolean | true or false |
| | text | `true` or `false` |
| category (nps_category) | text | the category |
| | dropdown | the option of that value (every category must be an option) |

Anything else (a yes/no into a number field, any metric into a date field...) is a
mismatch, refused before anything is written. A metric without a value clears a field
(sends null) only where write-back wrote it before.

Helpdesks hand values back in their own way (Zendesk: numbers in ticket fields as
strings, an unset checkbox as false), so comparisons go through `normalize`, never `==`.
An unset checkbox is not taken for false: Intercom and Freshdesk tell the two apart.
"""

from __future__ import annotations

import math
from typing import Any

from connectors.base import FieldDef
from kpi_core.writeback.mappings import Kind, Metric

ACCEPTS: dict[Kind, frozenset[str]] = {
    Kind.NUMBER: frozenset({"number", "integer", "text"}),
    Kind.INTEGER: frozenset({"number", "integer", "text"}),
    Kind.BOOLEAN: frozenset({"checkbox", "text"}),
    Kind.CATEGORY: frozenset({"text", "dropdown"}),
}
# The field type `fields --create` gives each kind of metric.
CREATE_TYPE: dict[Kind, str] = {Kind.NUMBER: "number", Kind.INTEGER: "integer", Kind.BOOLEAN: "checkbox",
                                Kind.CATEGORY: "text"}
_WORDS = {Kind.NUMBER: "a number", Kind.INTEGER: "a count", Kind.BOOLEAN: "a yes/no value",
          Kind.CATEGORY: "a category"}


def mismatch(metric: Metric, field: FieldDef) -> str | None:
    """Why `metric` cannot go into `field`, or None when it can."""
    if field.type not in ACCEPTS[metric.kind]:
        fits = " or ".join(sorted(ACCEPTS[metric.kind]))
        return (f"the field is a {field.vendor_type} field; {metric.name} is {_WORDS[metric.kind]}, which goes"
                f" into a {fits} field")
    if field.type == "dropdown":
        missing = [v for v in metric.values if v not in field.options]
        if missing:
            return f"the dropdown lacks the option(s) {', '.join(missing)}"
    return None


def to_field(value: Any, field_type: str) -> Any:
    """The value to send for `value` (a metric's, or None) into a field of `field_type` (see the table)."""
    if value is None:
        return None
    if field_type == "text":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return decimal_string(value)
        return str(value)
    if field_type == "integer":
        return math.floor(value + 0.5) if isinstance(value, float) else int(value)
    if field_type == "checkbox":
        return bool(value)
    return value


def decimal_string(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return str(value)
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def normalize(value: Any, field_type: str) -> Any:
    """A field value as comparable: the same whichever way the helpdesk spelled it."""
    if field_type == "checkbox" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value is None or value == "":
        return None
    if field_type in ("text", "dropdown"):
        if isinstance(value, bool):
            return "true" if value else "false"
        return decimal_string(value) if isinstance(value, (int, float)) else str(value)
    if field_type in ("integer", "number") and not isinstance(value, bool):
        number = _number(value)
        if number is not None:
            return int(number) if number.is_integer() else round(number, 6)
    return value


def same(a: Any, b: Any, field_type: str) -> bool:
    return bool(normalize(a, field_type) == normalize(b, field_type))


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
