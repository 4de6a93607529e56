"""The admin's topic rules (`[insight] topics`), compiled once and applied to a message's text.

A rule is a phrase, matched as whole words with case and accents folded ("réclamation" matches
"RECLAMATION", "Straße" matches "strasse"), or `re:` followed by a regular expression, searched
case-insensitively in the text with its accents folded (accents in the expression are folded too).
The rules of the message's language are tried first, then those under "*"; within each, topics in
the order the configuration lists them, and the first topic with a matching rule wins. A message
without a language meets only the "*" rules.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ANY_LANGUAGE = "*"
REGEX_PREFIX = "re:"
_WHITESPACE = re.compile(r"\s+")


class TopicRuleError(ValueError):
    """A topic rule that cannot be compiled; the message names `insight.topics.<lang>.<topic>` and the rule."""


def language_key(language: str) -> str:
    """A configured or detected language as the rules are looked up: its primary subtag in lower case
    ("en-US", "EN_gb" and "en" are all "en")."""
    return re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0] or language


def fold(text: str) -> str:
    """Text with accents removed (é -> e), for matching that ignores them."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True)
class _Topic:
    name: str
    phrases: re.Pattern[str] | None  # the topic's phrases as one alternation, over casefolded text
    expressions: re.Pattern[str] | None  # its regular expressions as one alternation, over accent-folded text


def _phrase(rule: str) -> str:
    words = [re.escape(word) for word in _WHITESPACE.split(fold(rule).casefold().strip())]
    return r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)"


def _expression(rule: str, where: str) -> str:
    # Only accents are folded here: casefolding an expression would turn \W into \w.
    source = fold(rule[len(REGEX_PREFIX):])
    try:
        re.compile(source, re.IGNORECASE)
    except re.error as exc:
        raise TopicRuleError(f"{where} rule {rule!r} is not a valid regular expression ({exc}).") from None
    return f"(?:{source})"


def _alternation(parts: list[str], rules: Sequence[str], where: str) -> re.Pattern[str] | None:
    if not parts:
        return None
    try:
        return re.compile("|".join(parts), re.IGNORECASE)
    except re.error as exc:  # expressions that compile alone but not together (a group name used twice)
        raise TopicRuleError(f"{where} rules {list(rules)!r} cannot be combined ({exc}).") from None


def _compile(language: str, topics: Mapping[str, Sequence[str]]) -> tuple[_Topic, ...]:
    compiled = []
    for name, rules in topics.items():
        where = f"insight.topics.{language}.{name}"
        if isinstance(rules, str) or not rules:
            raise TopicRuleError(f"{where} needs a list of rules (phrases or re:<regular expression>).")
        phrases, expressions = [], []
        for rule in rules:
            if not isinstance(rule, str) or not rule.strip() or rule.strip() == REGEX_PREFIX:
                raise TopicRuleError(f"{where} has an empty rule; give a phrase or re:<regular expression>.")
            if rule.startswith(REGEX_PREFIX):
                expressions.append(_expression(rule, where))
            else:
                phrases.append(_phrase(rule))
        compiled.append(_Topic(name, _alternation(phrases, rules, where), _alternation(expressions, rules, where)))
    return tuple(compiled)


class TopicRules:
    """Compiled topic rules; `match(text, language)` names the first matching topic or None."""

    def __init__(self, rules: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        # Detection names a language, not a region: rules under "en-US" or "pt_BR" apply to "en" and "pt"
        # messages; regional tables of one language are tried in the order the configuration lists them.
        self._by_language: dict[str, tuple[_Topic, ...]] = {}
        for language, topics in rules.items():
            key = language_key(language)
            self._by_language[key] = (*self._by_language.get(key, ()), *_compile(language, topics))
        self._any = self._by_language.pop(ANY_LANGUAGE, ())

    def __bool__(self) -> bool:
        return bool(self._any) or any(self._by_language.values())

    def match(self, text: str, language: str | None) -> str | None:
        """The first topic whose rules match `text`: the language's own rules, then those for every language."""
        if not text or not self:
            return None
        folded = fold(text)
        casefolded = folded.casefold()
        own = self._by_language.get(language_key(language), ()) if language else ()
        for topic in (*own, *self._any):
            if (topic.phrases and topic.phrases.search(casefolded)) or (
                topic.expressions and topic.expressions.search(folded)
            ):
                return topic.name
        return None
