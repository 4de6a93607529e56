"""Helpdesk connectors, one module each, registered by name.

A fourth helpdesk is one new module here (and its fake in `connectors/sandbox/`) plus a
line in `CONNECTORS`; nothing in `kpi_core` changes.
"""

from __future__ import annotations

import importlib
from typing import Any

from connectors.base import ConfigError, Connector

# name -> "module:Class", imported on demand so one broken connector cannot break the others.
CONNECTORS: dict[str, str] = {
    "zendesk": "connectors.zendesk:ZendeskConnector",
    "intercom": "connectors.intercom:IntercomConnector",
    "freshdesk": "connectors.freshdesk:FreshdeskConnector",
}


def connector_class(name: str) -> Any:
    try:
        module_name, class_name = CONNECTORS[name].split(":")
    except KeyError:
        raise ConfigError(f"unknown helpdesk {name!r}; known: {', '.join(sorted(CONNECTORS))}") from None
    return getattr(importlib.import_module(module_name), class_name)


def build_connector(name: str, settings: Any) -> Connector:
    """The connector `name`, configured from its settings section."""
    connector: Connector = connector_class(name)(settings)
    return connector
