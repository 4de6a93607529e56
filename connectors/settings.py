"""The settings every connector shares; each connector package subclasses `ConnectorSettings`.

`kpi_core.settings` validates each `[connectors.NAME]` table with the model the connector
`NAME` provides (its plugin's `settings`), so a connector owns its configuration and the
core names none. Secrets are `SecretStr`, unwrapped only where an HTTP session is built.
"""

from __future__ import annotations

import re
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from connectors.base import PrivacyChoices


class ConnectorSettings(BaseModel):
    """The keys of every `[connectors.NAME]` table; a connector adds its own (account, token)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = True
    base_url: str = ""
    start_date: date = date(2026, 1, 1)
    page_size: int | None = Field(default=None, ge=1, description="override the API's page size (tests, slow links)")
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20)
    # Agent accounts that bots post as (catalogue 2c: applies to every source). Freshdesk marks no bot at all;
    # on Zendesk and Intercom an integration bot that posts through an ordinary agent seat is only known this way.
    bot_agent_ids: list[str] = Field(default_factory=list)
    # The [privacy] switches, handed over by the core's settings after validation (not a key of this table).
    _privacy: PrivacyChoices | None = PrivateAttr(default=None)

    @property
    def privacy(self) -> PrivacyChoices | None:
        """What the connector may store of personal data; None keeps nothing personal."""
        return self._privacy

    def with_privacy(self, choices: PrivacyChoices) -> None:
        """Hand over the `[privacy]` switches (the connector reads them through `privacy`)."""
        self._privacy = choices

    @field_validator("bot_agent_ids", mode="before")
    @classmethod
    def _ids_as_text(cls, value: object) -> object:
        # Helpdesks number their agents: accept `[43999]` as well as `["43999"]`.
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s?#]+/?$", value):
            raise ValueError("must be scheme://host[:port] with no path, e.g. https://acme.example.com")
        if value.startswith("http://") and not is_loopback(value):
            raise ValueError("plain http is allowed only for a loopback address (the sandbox); use https")
        return value.rstrip("/")


def is_loopback(url: str) -> bool:
    host = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def has_secret(value: SecretStr | None) -> bool:
    return bool(value and value.get_secret_value())
