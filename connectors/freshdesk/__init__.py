"""Freshdesk: reading, normalizing, writing back, settings and the sandbox's fake, registered as one plugin."""

from __future__ import annotations

from connectors.freshdesk.connector import FreshdeskConnector
from connectors.freshdesk.fake import FakeFreshdesk
from connectors.freshdesk.settings import FreshdeskSettings
from connectors.freshdesk.writer import FreshdeskWriter
from connectors.plugin import ConnectorPlugin, WriteFacts, WriteLevel

WRITE_FACTS = WriteFacts(
    objects={
        "ticket": WriteLevel.CONTACT,
        "contact": WriteLevel.REQUESTER,
        "company": WriteLevel.ORGANIZATION,
    },
)

PLUGIN = ConnectorPlugin(
    name="freshdesk",
    title="Freshdesk",
    settings=FreshdeskSettings,
    connector=FreshdeskConnector,
    writer=FreshdeskWriter,
    write_facts=WRITE_FACTS,
    fake=FakeFreshdesk,
)
