"""`[connectors.freshdesk]`: the account's domain, its API key, and the admin's Freshdesk mappings.

Besides the keys every connector has (`bot_agent_ids` among them, see `connectors.settings`):
- `source_channels` / `source_platforms`: ticket `source` code -> channel / platform, over the
  catalogue's defaults (a code the account adds later is `other` until mapped here);
- `survey_questions`: custom-survey question -> {kind, scale}; only the default question is
  CSAT unless mapped here (catalogue 2b);
- `merge_note_texts`: other texts of the note a merge leaves on the ticket merged into another
  (the agent's own words, another language), besides Freshdesk's default; the API has no
  merged flag (see `normalize.merge_target`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.freshdesk.normalize import FRESHDESK_SCALE_NAME
from connectors.settings import ConnectorSettings, has_secret
from kpi_core.model import SCALES, Channel, SurveyKind


class SurveyQuestion(BaseModel):
    """What a custom-survey question measures, and on which scale its answers are."""

    model_config = ConfigDict(extra="forbid")

    kind: SurveyKind
    scale: str

    @model_validator(mode="after")
    def _check_scale(self) -> SurveyQuestion:
        if self.scale == FRESHDESK_SCALE_NAME:
            # Freshdesk's answer codes (normalize.FRESHDESK_SCALE) are categories, never rescaled onto
            # NPS's 0-10 or CES's 1-7.
            if self.kind != SurveyKind.CSAT:
                raise ValueError(f"the {FRESHDESK_SCALE_NAME} scale holds answer codes: only a csat question uses it")
        elif self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; one of {', '.join([*SCALES, FRESHDESK_SCALE_NAME])}")
        return self


class FreshdeskSettings(ConnectorSettings):
    domain: str = ""
    api_key: SecretStr | None = None
    source_channels: dict[int, Channel] = Field(default_factory=dict)
    source_platforms: dict[int, str] = Field(default_factory=dict)
    survey_questions: dict[str, SurveyQuestion] = Field(default_factory=dict)
    # Beside Freshdesk's default merge note (normalize.DEFAULT_MERGE_NOTE), which is always read.
    merge_note_texts: list[str] = Field(default_factory=list)

    @field_validator("survey_questions")
    @classmethod
    def _check_questions(cls, value: dict[str, SurveyQuestion]) -> dict[str, SurveyQuestion]:
        if "default_question" in value:
            raise ValueError("default_question is always CSAT on Freshdesk's own scale")
        return value

    @field_validator("source_platforms")
    @classmethod
    def _check_platforms(cls, value: dict[int, str]) -> dict[int, str]:
        # One spelling across vendors (catalogue 2c): lowercase words joined by underscores.
        bad = [name for name in value.values() if not name or name != name.strip().lower() or " " in name]
        if bad:
            raise ValueError(f"platforms are lowercase words joined by '_', e.g. 'telegram': {bad}")
        return value

    @field_validator("merge_note_texts")
    @classmethod
    def _check_merge_notes(cls, value: list[str]) -> list[str]:
        if any(not text.strip() for text in value):
            raise ValueError("a merge note text cannot be empty")
        return value

    @model_validator(mode="after")
    def _check_account(self) -> FreshdeskSettings:
        if not self.enabled:
            return self
        if not (self.domain or self.base_url):
            raise ValueError("set domain (or base_url)")
        if not has_secret(self.api_key):
            raise ValueError("set api_key")
        return self
