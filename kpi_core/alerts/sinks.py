"""Sending one alert to one sink: a webhook (generic JSON or Slack's body), e-mail, or a private note on the
contact through its helpdesk's writer. Each returns (status, error); an error names the sink by host only."""

from __future__ import annotations

import logging
from typing import Any

from connectors.base import SyncError, Writer, WriteRequest
from connectors.plugin import WriteLevel
from connectors.registry import build_writer, plugin
from kpi_core.alerts import state
from kpi_core.alerts.messages import Message, webhook_json
from kpi_core.alerts.routing import Sink
from kpi_core.delivery import DeliveryError, post_json, send_email, slack_body
from kpi_core.settings import Settings

log = logging.getLogger(__name__)


class Senders:
    """The sinks of one pass; writers for notes are built once per helpdesk and closed at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._writers: dict[str, Writer] = {}

    def send(self, sink: Sink, event: dict[str, Any], message: Message, covers: int) -> tuple[str, str | None]:
        try:
            if sink.kind == "webhook":
                assert sink.url is not None
                body = slack_body(message.title, message.lines) if sink.slack else webhook_json(event, message,
                                                                                                 covers)
                post_json(sink.url.get_secret_value(), body, timeout=self.settings.alerts.webhook_timeout_seconds)
            elif sink.kind == "email":
                send_email(self.settings.smtp, sink.recipients, f"[helpdesk-kpi] {message.title}", message.text,
                           message.html())
            else:
                return self._note(event, message)
        except DeliveryError as exc:
            return state.FAILED, str(exc)
        except Exception:  # one sink's surprise must not leave the pass, or the other deliveries, half done
            log.debug("alerts: %s failed unexpectedly", sink.label, exc_info=True)
            return state.FAILED, f"{sink.label} failed unexpectedly (run with -v for details)"
        return state.SENT, None

    def _note(self, event: dict[str, Any], message: Message) -> tuple[str, str | None]:
        source = event["source"]
        if event["kind"] != "contact" or not source:
            return state.FAILED, "a note needs a contact"
        facts = plugin(source).write_facts if source in self.settings.connectors else None
        obj = facts.object_for(WriteLevel.CONTACT) if facts else None
        if obj is None:
            return state.FAILED, f"{source}: notes cannot be written to this helpdesk"
        try:
            writer = self._writer(source)
            result = writer.add_note(WriteRequest(obj, str(event["contact_id"]), note=message.text))
        except SyncError as exc:
            return state.FAILED, f"{source}: {exc}"
        if result.ok:
            return state.SENT, None
        return (state.FAILED if result.certain else state.UNCERTAIN), f"{source}: {result.error}"

    def _writer(self, source: str) -> Writer:
        if source not in self._writers:
            self._writers[source] = build_writer(source, self.settings.connectors[source])
        return self._writers[source]

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
