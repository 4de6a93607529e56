"""Shopify: the shop's orders (Admin GraphQL API), settings and the sandbox's fake, registered as one plugin.

An order source, not a helpdesk: it reads one stream, `orders`, and writes nothing back.
"""

from __future__ import annotations

from connectors.plugin import ConnectorPlugin
from connectors.shopify.connector import ShopifyConnector
from connectors.shopify.fake import FakeShopify
from connectors.shopify.settings import ShopifySettings

PLUGIN = ConnectorPlugin(
    name="shopify",
    title="Shopify",
    settings=ShopifySettings,
    connector=ShopifyConnector,
    fake=FakeShopify,
    helpdesk=False,
)
