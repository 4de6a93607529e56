"""`[connectors.freshdesk]`: the account's domain, its API key and the agents that are bots."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from connectors.settings import ConnectorSettings, has_secret


class FreshdeskSettings(ConnectorSettings):
    domain: str = ""
    api_key: SecretStr | None = None
    # Freshdesk marks no bot: the ids of agent accounts that bots (answer bots, AI agents) post as.
    bot_agent_ids: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_account(self) -> FreshdeskSettings:
        if not self.enabled:
            return self
        if not (self.domain or self.base_url):
            raise ValueError("set domain (or base_url)")
        if not has_secret(self.api_key):
            raise ValueError("set api_key")
        return self
