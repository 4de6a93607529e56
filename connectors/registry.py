"""The registered connectors: every `ConnectorPlugin` under the entry-point group
`helpdesk_kpi.connectors`, the built-in ones included (see pyproject.toml).

A connector shipped as its own distribution declares, in its own pyproject.toml:

    [project.entry-points."helpdesk_kpi.connectors"]
    acme = "acme_connector:PLUGIN"

and is then validated, synced, written back, shown in `status` and the report like the
built-in ones. Registry order is the order `sync`, `push` and the sandbox's ports follow:
the built-in connectors first, then the others by name.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from connectors.base import ConfigError, Connector, Writer
from connectors.plugin import ENTRY_POINT_GROUP, ConnectorPlugin
from connectors.settings import ConnectorSettings

log = logging.getLogger(__name__)

# The connectors this distribution ships, in the order they are synced and served.
BUILT_IN = ("zendesk", "intercom", "freshdesk")


@cache
def plugins() -> dict[str, ConnectorPlugin]:
    """name -> plugin, loaded once per process. A plugin that fails to load is left out, logged."""
    found: dict[str, ConnectorPlugin] = {}
    points = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: _order(p.name))
    for point in points:
        plugin = _load(point)
        if plugin is not None and plugin.name not in found:
            found[plugin.name] = plugin
    return found


def _order(name: str) -> tuple[int, str]:
    return (BUILT_IN.index(name), "") if name in BUILT_IN else (len(BUILT_IN), name)


def _load(point: EntryPoint) -> ConnectorPlugin | None:
    try:
        plugin = point.load()
    except Exception as exc:  # a broken third-party package must not break the others
        log.error("connector %r (%s) cannot be loaded: %s", point.name, point.value, exc)
        return None
    if not isinstance(plugin, ConnectorPlugin) or plugin.name != point.name:
        log.error("connector %r (%s) is not a ConnectorPlugin named %r", point.name, point.value, point.name)
        return None
    return plugin


def names() -> list[str]:
    return list(plugins())


def plugin(name: str) -> ConnectorPlugin:
    try:
        return plugins()[name]
    except KeyError:
        raise ConfigError(f"unknown helpdesk {name!r}; known: {', '.join(plugins())}") from None


def build_connector(name: str, settings: ConnectorSettings) -> Connector:
    """The connector `name`, configured from its validated settings table."""
    return plugin(name).connector(settings)


def build_writer(name: str, settings: ConnectorSettings, **options: Any) -> Writer:
    """The writer of helpdesk `name`, configured from its connector's settings table."""
    found = plugin(name)
    if found.writer is None:
        raise ConfigError(f"helpdesk {name!r} cannot be written to; writable: {', '.join(writable())}")
    return found.writer(settings, **options)


def writable() -> list[str]:
    return [name for name, p in plugins().items() if p.writer is not None]
