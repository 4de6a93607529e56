"""What a connector package registers: one `ConnectorPlugin` under the entry-point group
`helpdesk_kpi.connectors`.

The core reads everything it needs to know about a helpdesk from here: the settings model
that validates its `[connectors.NAME]` table, how to build its reader and writer, what its
write side looks like (which objects take which metrics, what is read-only), and the fake
that serves it in the sandbox. Nothing in `kpi_core` names a vendor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from connectors.base import Connector, Writer
from connectors.settings import ConnectorSettings

ENTRY_POINT_GROUP = "helpdesk_kpi.connectors"


class WriteLevel(StrEnum):
    """Which record a written value describes: the contact, its requester or the requester's organization."""

    CONTACT = "contact"
    REQUESTER = "requester"
    ORGANIZATION = "organization"


@dataclass(frozen=True)
class WriteFacts:
    """The write side of a helpdesk as the planner needs it.

    `objects`: the helpdesk's object names and the level of metrics each takes (exactly one
    object per level that can be written). `closed_is_read_only`: closed contacts refuse
    every update, so none is planned for them. `external_keys`: objects the API addresses by
    another key than the record id, with the key's name in the stored raw payload.
    """

    objects: Mapping[str, WriteLevel]
    closed_is_read_only: bool = False
    external_keys: Mapping[str, str] = field(default_factory=dict)

    def object_for(self, level: WriteLevel) -> str | None:
        return next((o for o, lv in self.objects.items() if lv is level), None)


@dataclass(frozen=True)
class ConnectorPlugin:
    """One helpdesk (or shop) as the core sees it."""

    name: str  # the `[connectors.NAME]` key and the `source` of every record it reads
    title: str  # how people name it ("Zendesk")
    settings: type[ConnectorSettings]
    connector: Callable[[Any], Connector]  # built from a validated `settings` instance
    writer: Callable[..., Writer] | None = None  # (settings, **options) -> Writer; None: read-only
    write_facts: WriteFacts | None = None
    fake: Callable[..., Any] | None = None  # (World, **options) -> connectors.sandbox.server.FakeApi
    # False for an order source (a shop): it reads orders, no contacts, people or surveys, so what
    # is true of every helpdesk (tests/test_connector_contract.py) is not asked of it.
    helpdesk: bool = True

    def __post_init__(self) -> None:
        if (self.writer is None) != (self.write_facts is None):
            raise ValueError(f"connector {self.name!r}: a writer and its write facts come together")
