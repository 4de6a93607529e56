"""One message's text in, its language, sentiment score and topic out; the text itself is not kept.

`Analyzer.from_settings(settings.insight)` compiles the topic rules once (a bad rule is a
`TopicRuleError` naming it); the language model and each sentiment lexicon load on first use and
stay loaded for the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kpi_core.insight import language as languages
from kpi_core.insight import sentiment
from kpi_core.insight.text import prepare
from kpi_core.insight.topics import TopicRules

if TYPE_CHECKING:
    from kpi_core.settings import InsightSettings


@dataclass(frozen=True)
class MessageInsight:
    """What is kept of a message: nothing of its words."""

    language: str | None  # ISO 639-1 ("en", "de"); None when the text is too short or the detector unsure
    sentiment: float | None  # -1..1; None when no method covers the language (never a guess)
    topic: str | None  # the first matching topic rule's name; None when none matches


NOTHING = MessageInsight(language=None, sentiment=None, topic=None)


class Analyzer:
    """Language, sentiment and topic of messages, with the admin's topic rules compiled once."""

    def __init__(self, topics: TopicRules) -> None:
        self._topics = topics

    @classmethod
    def from_settings(cls, settings: InsightSettings) -> Analyzer:
        """An analyzer for `[insight]`; raises TopicRuleError naming `insight.topics.<lang>.<topic>` and the rule."""
        return cls(TopicRules(settings.topics))

    def analyze(self, text: str | None) -> MessageInsight:
        """The message's language, sentiment and topic, read from its own words (quotes and signature cut)."""
        prepared = prepare(text)
        if not prepared:
            return NOTHING
        language = languages.detect(prepared)
        return MessageInsight(
            language=language,
            sentiment=sentiment.score(prepared, language),
            topic=self._topics.match(prepared, language),
        )

    def analyze_many(self, texts: Sequence[str | None]) -> list[MessageInsight]:
        """`analyze` for each text, in the same order."""
        return [self.analyze(text) for text in texts]

    def language(self, text: str) -> str | None:
        """The language only (an agent's reply needs no sentiment or topic)."""
        prepared = prepare(text)
        return languages.detect(prepared) if prepared else None
