"""The sandbox: fake Zendesk, Intercom and Freshdesk APIs on loopback over one generated world.

`helpdesk-kpi sandbox` and `demo` serve it; the tests start it on port 0. Each fake lives
in its connector's package and is found through the connector registry (`ConnectorPlugin.fake`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors import registry
from connectors.sandbox.server import FakeApi
from connectors.sandbox.world import World


def fake_names() -> tuple[str, ...]:
    """The registered connectors that ship a fake, in registry order."""
    return tuple(name for name, p in registry.plugins().items() if p.fake is not None)


def fake_class(name: str) -> Any:
    found = registry.plugin(name).fake
    if found is None:
        raise KeyError(f"connector {name!r} ships no sandbox fake")
    return found


@dataclass
class Sandbox:
    """All fakes over one world; `start` binds them to consecutive ports (or free ones)."""

    world: World
    names: tuple[str, ...] = field(default_factory=fake_names)
    fakes: dict[str, FakeApi] = field(default_factory=dict)

    @classmethod
    def generate(cls, seed: int = 7, tickets: int = 600, names: tuple[str, ...] | None = None,
                 days: int = 120, **fake_options: Any) -> Sandbox:
        """A world of `tickets` spread over the last `days` days, served by the fakes of `names` (all)."""
        sandbox = cls(World(seed=seed, tickets=tickets, days=days), names or fake_names())
        for name in sandbox.names:
            sandbox.fakes[name] = fake_class(name)(sandbox.world, **fake_options)
        return sandbox

    def start(self, host: str = "127.0.0.1", port: int = 0) -> dict[str, str]:
        urls = {}
        for offset, (name, fake) in enumerate(self.fakes.items()):
            urls[name] = fake.start(host, port + offset if port else 0)
        return urls

    def stop(self) -> None:
        for fake in self.fakes.values():
            fake.stop()

    def __getitem__(self, name: str) -> FakeApi:
        return self.fakes[name]

    def connector_settings(self) -> dict[str, dict[str, Any]]:
        """The `[connectors.NAME]` sections that point each connector at its fake."""
        return {name: fake.connector_settings() for name, fake in self.fakes.items()}

    def config_toml(self, store_path: str, start_date: str | None = None) -> str:
        """A complete config file for this sandbox (used by `demo` and the tests)."""
        lines = ["[store]", f'path = "{store_path}"', ""]
        for name, section in self.connector_settings().items():
            lines.append(f"[connectors.{name}]")
            if start_date:
                section = {**section, "start_date": start_date}
            for key, value in section.items():
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
