"""Zendesk: reading, normalizing, writing back, settings and the sandbox's fake, registered as one plugin."""

from __future__ import annotations

from connectors.plugin import ConnectorPlugin, WriteFacts, WriteLevel
from connectors.zendesk.connector import ZendeskConnector
from connectors.zendesk.fake import FakeZendesk
from connectors.zendesk.settings import ZendeskSettings
from connectors.zendesk.writer import ZendeskWriter

WRITE_FACTS = WriteFacts(
    objects={
        "ticket": WriteLevel.CONTACT,
        "user": WriteLevel.REQUESTER,
        "organization": WriteLevel.ORGANIZATION,
    },
    closed_is_read_only=True,  # a closed ticket refuses every update
)

PLUGIN = ConnectorPlugin(
    name="zendesk",
    title="Zendesk",
    settings=ZendeskSettings,
    connector=ZendeskConnector,
    writer=ZendeskWriter,
    write_facts=WRITE_FACTS,
    fake=FakeZendesk,
)
