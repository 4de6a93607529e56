"""Where an alert goes: every route whose lists all match it, else the sinks of `[alerts]` itself.

A sink is stored as a label that names it without its secret: `default/webhook1@hooks.example.com`,
`chat-team/email`, `default/note`. Sending resolves the label against the current settings again, so a
webhook URL never reaches the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from kpi_core.delivery import sink_host
from kpi_core.settings import AlertRoute, AlertSettings, AlertSinks

DEFAULT = "default"


@dataclass(frozen=True)
class Sink:
    label: str
    kind: str  # webhook | email | note
    url: SecretStr | None = None
    slack: bool = False
    recipients: tuple[str, ...] = ()


def route_name(route: AlertRoute, index: int) -> str:
    return route.name or f"route{index + 1}"


def sinks_of(name: str, sinks: AlertSinks) -> list[Sink]:
    found = [Sink(f"{name}/webhook{i}@{sink_host(url.get_secret_value())}", "webhook", url=url, slack=sinks.slack)
             for i, url in enumerate(sinks.webhooks, 1)]
    if sinks.email:
        found.append(Sink(f"{name}/email", "email", recipients=tuple(sinks.email)))
    if sinks.note:
        found.append(Sink(f"{name}/note", "note"))
    return found


def _matches(route: AlertRoute, dims: Mapping[str, str | None]) -> bool:
    for scope, wanted in (("channel", route.channel), ("market", route.market), ("group", route.group)):
        if not wanted:
            continue
        value = dims.get(scope)
        if value is None:
            return False
        names = {value, value.split(":", 1)[-1]} if scope == "group" else {value}
        if not names & set(wanted):
            return False
    return True


def route(settings: AlertSettings, dims: Mapping[str, str | None], *, notes: bool) -> list[Sink]:
    """The sinks of an alert with these channel, market and group; `notes`: whether a contact note applies."""
    chosen: list[Sink] = []
    for index, r in enumerate(settings.routes):
        if _matches(r, dims):
            chosen += sinks_of(route_name(r, index), r)
    if not chosen:
        chosen = sinks_of(DEFAULT, settings)
    return [s for s in _unique(chosen) if notes or s.kind != "note"]


def _unique(sinks: Iterable[Sink]) -> list[Sink]:
    seen: dict[str, Sink] = {}
    for sink in sinks:
        seen.setdefault(sink.label, sink)
    return list(seen.values())


def resolve(settings: AlertSettings, label: str) -> Sink | None:
    """The sink a stored label names under the current settings (None when it is no longer configured)."""
    candidates = sinks_of(DEFAULT, settings)
    for index, r in enumerate(settings.routes):
        candidates += sinks_of(route_name(r, index), r)
    return next((s for s in candidates if s.label == label), None)
