"""`[connectors.shopify]`: the shop, its Admin API access token, the API version and when a first sync runs in bulk.

The token is a secret: set it as `HELPDESK_KPI_CONNECTORS__SHOPIFY__ACCESS_TOKEN` in the
environment rather than in the file. Orders older than 60 days are visible only to an app
granted `read_all_orders` besides `read_orders` (docs/shopify.md).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.settings import ConnectorSettings, has_secret

# A version the connector was written against; Shopify supports each quarterly version for a year.
DEFAULT_API_VERSION = "2025-07"


class ShopifySettings(ConnectorSettings):
    # The shop's permanent domain, e.g. `acme.myshopify.com` (or `acme`).
    shop: str = ""
    access_token: SecretStr | None = None
    api_version: str = DEFAULT_API_VERSION
    # A first sync of a shop with at least this many orders since start_date reads them through one bulk
    # operation (a JSONL file) instead of paged queries; 0 always does.
    bulk_threshold: int = Field(default=10_000, ge=0)
    # Seconds between polls of a running bulk operation.
    bulk_poll_seconds: float = Field(default=2.0, gt=0)
    # Optional CSV of `shop_customer_id,requester` ("zendesk:123"): customers matched explicitly
    # where the keyed e-mail hash cannot (a helpdesk that knows no e-mail, a different address).
    customer_map: Path | None = None

    @field_validator("shop")
    @classmethod
    def _check_shop(cls, value: str) -> str:
        value = value.strip().lower().removeprefix("https://").rstrip("/")
        if value and not re.fullmatch(r"[a-z0-9][a-z0-9-]*(\.myshopify\.com)?", value):
            raise ValueError("must be the shop's myshopify domain, e.g. 'acme' or 'acme.myshopify.com'")
        return value if not value or value.endswith(".myshopify.com") else f"{value}.myshopify.com"

    @field_validator("api_version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-(01|04|07|10)|unstable", value):
            raise ValueError("must be a Shopify API version such as '2025-07'")
        return value

    @model_validator(mode="after")
    def _check_account(self) -> ShopifySettings:
        if not self.enabled:
            return self
        if not (self.shop or self.base_url):
            raise ValueError("set shop (e.g. 'acme.myshopify.com')")
        if not has_secret(self.access_token):
            raise ValueError("set access_token (HELPDESK_KPI_CONNECTORS__SHOPIFY__ACCESS_TOKEN)")
        return self

    @property
    def shop_name(self) -> str:
        """The shop as error messages name it."""
        return self.shop or self.base_url.split("://", 1)[-1]
