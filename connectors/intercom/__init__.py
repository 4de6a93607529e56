"""Intercom: reading, normalizing, writing back, settings and the sandbox's fake, registered as one plugin."""

from __future__ import annotations

from connectors.intercom.connector import IntercomConnector
from connectors.intercom.fake import FakeIntercom
from connectors.intercom.settings import IntercomSettings
from connectors.intercom.writer import IntercomWriter
from connectors.plugin import ConnectorPlugin, WriteFacts, WriteLevel

WRITE_FACTS = WriteFacts(
    objects={
        "conversation": WriteLevel.CONTACT,
        "contact": WriteLevel.REQUESTER,
        "company": WriteLevel.ORGANIZATION,
    },
    external_keys={"company": "company_id"},  # companies are written by their company_id
)

PLUGIN = ConnectorPlugin(
    name="intercom",
    title="Intercom",
    settings=IntercomSettings,
    connector=IntercomConnector,
    writer=IntercomWriter,
    write_facts=WRITE_FACTS,
    fake=FakeIntercom,
)
