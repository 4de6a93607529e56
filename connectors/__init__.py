"""Helpdesk connectors, one module each, registered by name.

A fourth helpdesk is one new module here (and its fake in `connectors/sandbox/`) plus a
line in `CONNECTORS`; nothing in `kpi_core` changes.
"""

from __future__ import annotations

import importlib
from typing import Any

from connectors.base import ConfigError, Connector, Writer

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


# Write-back, registered like the connectors: name -> "module:Class" implementing `base.Writer`.
WRITERS: dict[str, str] = {
    "zendesk": "connectors.zendesk_writer:ZendeskWriter",
    "intercom": "connectors.intercom_writer:IntercomWriter",
    "freshdesk": "connectors.freshdesk_writer:FreshdeskWriter",
}


def build_writer(name: str, settings: Any, **options: Any) -> Writer:
    """The writer of helpdesk `name`, configured from its connector's settings section."""
    try:
        module_name, class_name = WRITERS[name].split(":")
    except KeyError:
        raise ConfigError(f"helpdesk {name!r} cannot be written to; known: {', '.join(sorted(WRITERS))}") from None
    writer: Writer = getattr(importlib.import_module(module_name), class_name)(settings, **options)
    return writer
