"""A Shopify order (GraphQL node or bulk JSONL object) -> an `orders` record.

Kept: ids, times, the shop-money total and currency, refunds (each at its own date), SKUs and
quantities, and the customer's keyed e-mail hash. Dropped: names, e-mail addresses, phones,
addresses and notes; the raw payload keeps only what is left after that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kpi_core.model import RecordError, email_hash, iso_utc

# Keys of an order payload that name or reach a person, removed at any depth from `raw`.
PERSONAL_KEYS = frozenset({
    "email", "phone", "firstName", "lastName", "displayName", "name", "note", "customer",
    "billingAddress", "shippingAddress", "defaultAddress", "addresses", "contactEmail", "customerLocale",
    "clientIp", "browserIp",
})


def gid_number(gid: Any) -> str:
    """`gid://shopify/Order/123` -> `123` (a plain id stays as it is)."""
    text = str(gid)
    return text.rsplit("/", 1)[-1] if text.startswith("gid://") else text


def money(value: Any) -> tuple[float | None, str | None]:
    """A MoneyBag's shop money: (amount, currency)."""
    shop = (value or {}).get("shopMoney") if isinstance(value, Mapping) else None
    if not isinstance(shop, Mapping):
        return None, None
    try:
        return float(shop["amount"]), shop.get("currencyCode")
    except (KeyError, TypeError, ValueError):
        raise RecordError(f"not an amount: {shop.get('amount')!r}") from None


def order_record(node: Mapping[str, Any], lines: Sequence[Mapping[str, Any]], hash_key: bytes | None,
                 requester_of: Mapping[str, str], source: str = "shopify") -> dict[str, Any]:
    """The `orders` row of one order; `lines` are its line-item nodes (`sku`, `quantity`)."""
    total, currency = money(node.get("totalPriceSet"))
    customer = node.get("customer") if isinstance(node.get("customer"), Mapping) else None
    address = customer.get("email") if customer else None
    customer_id = gid_number(customer["id"]) if customer and customer.get("id") else None
    refunds = []
    for refund in node.get("refunds") or []:
        amount, _ = money(refund.get("totalRefundedSet"))
        if amount:
            refunds.append({"at": iso_utc(refund.get("createdAt")), "amount": abs(amount)})
    raw = _scrub(node)
    return {
        "source": source,
        "source_id": gid_number(node["id"]),
        "customer_key": email_hash(address, hash_key) if hash_key and isinstance(address, str) and address.strip()
        else None,
        "requester": requester_of.get(customer_id) if customer_id else None,
        "shop_customer_id": customer_id,
        "created_at": iso_utc(node.get("createdAt")),
        "updated_at": iso_utc(node.get("updatedAt")),
        "cancelled_at": iso_utc(node.get("cancelledAt")),
        "currency": currency or node.get("currencyCode"),
        "total": total,
        "refunds": sorted(refunds, key=lambda r: str(r["at"])),
        "lines": [{"sku": line.get("sku"), "quantity": int(line.get("quantity") or 0)} for line in lines],
        "raw": raw,
    }


def _scrub(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _scrub(v) for k, v in value.items() if k not in PERSONAL_KEYS and k != "lineItems"}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value
