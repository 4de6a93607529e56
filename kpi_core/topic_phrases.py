"""Candidate phrases for topic rules: the frequent 1-3-word phrases of a sample of first customer messages.

Per language, each message is cut into runs of words between punctuation, numbers and stop words
(the language's list from `stopwordsiso`, bundled with the package), and every 1-3-word phrase of
a run is counted once per message. A phrase counts only when at least `min_count` messages hold
it, which also keeps a customer's name, an order number or an address out of what is printed.
A shorter phrase that a longer one nearly always comes with ("tracking" beside "tracking number")
is left out. Each phrase is told with the topic that the `[insight] topics` rules already give
most of the messages holding it, so the admin sees what is covered and what is new.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import stopwordsiso

from kpi_core.insight.topics import ANY_LANGUAGE, TopicRules

UNKNOWN = "und"  # the language of a message the detector was unsure about (the catalogue's code)
MAX_WORDS = 3
# A phrase is shown beside a longer one holding it only when it stands alone in at least this share of its
# messages more: "tracking" in 40 messages beside "tracking number" in 36 adds nothing.
NESTED_SHARE = 0.8
COVERED_PCT = 50.0  # a phrase is covered when an existing topic matches at least this share of its messages
# A phrase in more than this share of a language's messages (of at least COMMON_MIN) is how people write
# ("hallo", "bonjour") rather than what about: shown, marked, and left out of the snippet. Fewer messages say
# too little to tell a greeting from a frequent topic.
COMMON_PCT = 50.0
COMMON_MIN = 30
CANDIDATES = 400  # phrases weighed against each other per language, the most frequent first

# Languages written without spaces between words: word phrases cannot be cut from them by spaces.
UNSPACED = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})
# Words that the merged English list of stopwords-iso counts as filler but that customers name what they
# write about with ("my order", "tracking number", "website not working"): kept, so such phrases survive.
SUPPORT_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset({
        "order", "orders", "ordered", "number", "numbers", "problem", "problems", "bill", "open", "opened",
        "work", "works", "worked", "working", "sent", "free", "date", "page", "website", "site", "system",
        "home", "name", "help", "need", "back", "changes", "part", "parts", "value", "line", "test",
    }),
}

_HIDDEN = re.compile(r"\S+@\S+|https?://\S+|www\.\S+", re.IGNORECASE)  # addresses and links: never phrases
_BREAK = re.compile(r"[.!?;:,()\[\]{}\"“”„«»¿¡…/\\|*+=<>#~\n\r\t]+|\s[-–—]+\s")
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


@dataclass(frozen=True)
class Phrase:
    text: str
    count: int  # messages holding it
    share_pct: float  # of the language's messages
    common: bool  # in most of the language's messages: a greeting or a formula rather than a topic
    covered_by: str | None  # the topic the rules give most of its messages
    covered_pct: float | None  # share of its messages that topic gets

    @property
    def covered(self) -> bool:
        return self.covered_pct is not None and self.covered_pct >= COVERED_PCT


@dataclass(frozen=True)
class LanguagePhrases:
    language: str  # ISO 639-1 code, or "und"
    messages: int
    matched: int  # messages an existing topic rule already matches
    phrases: list[Phrase]
    note: str | None = None  # why phrases are missing or rougher for this language


def stop_words(language: str) -> frozenset[str] | None:
    """The language's stop words (None: no list for it), less the support words kept."""
    if language == UNKNOWN or not stopwordsiso.has_lang(language):
        return None
    return frozenset(stopwordsiso.stopwords(language)) - SUPPORT_WORDS.get(language, frozenset())


def runs(text: str, stops: frozenset[str] | None) -> list[list[str]]:
    """The runs of content words of `text`, lower-cased: stop words, numbers and punctuation end a run."""
    found: list[list[str]] = []
    for segment in _BREAK.split(_HIDDEN.sub(" . ", text.lower().replace("’", "'"))):
        run: list[str] = []
        for token in _TOKEN.findall(segment):
            for word in _words(token, stops):
                if word is None:
                    if run:
                        found.append(run)
                    run = []
                else:
                    run.append(word)
        if run:
            found.append(run)
    return found


def _words(token: str, stops: frozenset[str] | None) -> list[str | None]:
    """A token as words, None standing for a break: a stop word, a number, a single letter. An elided article
    ("l'adresse") is split from its word unless the whole token is itself a stop word ("don't")."""
    if stops is not None and token in stops:
        return [None]
    parts = token.split("'") if "'" in token else [token]
    return [None if (len(p) < 2 or any(ch.isdigit() for ch in p) or (stops is not None and p in stops)) else p
            for p in parts]


def phrases_of(text: str, stops: frozenset[str] | None) -> set[str]:
    """Every 1-3-word phrase of the runs of `text`, once."""
    out: set[str] = set()
    for run in runs(text, stops):
        for size in range(1, MAX_WORDS + 1):
            out.update(" ".join(run[i:i + size]) for i in range(len(run) - size + 1))
    return out


def suggest(messages: Iterable[tuple[str, str | None]], rules: TopicRules, *, top: int = 20, min_count: int = 3
            ) -> list[LanguagePhrases]:
    """Per language (the most messages first): the `top` candidate phrases of `messages` ((text, language))."""
    by_language: dict[str, list[str]] = defaultdict(list)
    for text, language in messages:
        by_language[language or UNKNOWN].append(text)
    found = [_language(language, texts, rules, top, min_count) for language, texts in by_language.items()]
    return sorted(found, key=lambda f: (-f.messages, f.language))


def _language(language: str, texts: Sequence[str], rules: TopicRules, top: int, min_count: int) -> LanguagePhrases:
    rule_language = None if language == UNKNOWN else language
    topics = [rules.match(text, rule_language) for text in texts]
    matched = sum(1 for t in topics if t)
    if language in UNSPACED:
        return LanguagePhrases(language, len(texts), matched, [],
                               "written without spaces between words: no phrases are cut from it")
    stops = stop_words(language)
    counts: Counter[str] = Counter()
    holders: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        for phrase in phrases_of(text, stops):
            counts[phrase] += 1
            holders[phrase].append(i)
    frequent = [(p, n) for p, n in counts.most_common(CANDIDATES) if n >= min_count]
    kept = _without_nested(frequent)[:top]
    phrases = [_phrase(p, n, len(texts), [topics[i] for i in holders[p]]) for p, n in kept]
    note = None if stops is not None else "no stop-word list for this language: phrases may hold filler words"
    return LanguagePhrases(language, len(texts), matched, phrases, note)


def _without_nested(frequent: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Leave out a phrase that a longer frequent phrase holding it nearly always comes with."""
    padded = [(f" {p} ", n) for p, n in frequent]
    out = []
    for phrase, count in frequent:
        inner = f" {phrase} "
        if not any(inner in longer and inner != longer and n >= NESTED_SHARE * count for longer, n in padded):
            out.append((phrase, count))
    return sorted(out, key=lambda pn: (-pn[1], -len(pn[0].split()), pn[0]))


def _phrase(text: str, count: int, messages: int, topics: list[str | None]) -> Phrase:
    share = 100.0 * count / messages
    common = messages >= COMMON_MIN and share > COMMON_PCT
    named = Counter(t for t in topics if t)
    if not named:
        return Phrase(text, count, round(share, 1), common, None, None)
    topic, hits = named.most_common(1)[0]
    return Phrase(text, count, round(share, 1), common, topic, round(100.0 * hits / count, 1))


def toml_snippet(found: Sequence[LanguagePhrases]) -> str:
    """`[insight.topics.<lang>]` tables with one topic per phrase no topic covers yet, named after it (phrases
    in most messages left out: greetings are no topic)."""
    lines: list[str] = []
    for language in found:
        fresh = [p for p in language.phrases if not p.covered and not p.common]
        if not fresh:
            continue
        key = ANY_LANGUAGE if language.language == UNKNOWN else language.language
        lines += ["", f"[insight.topics.{_toml_key(key)}]"]
        lines += [f"{_toml_string(p.text)} = [{_toml_string(p.text)}]  # {p.count} messages, {p.share_pct:g}%"
                  for p in fresh]
    return "\n".join(lines).lstrip("\n")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's."""
    return json.dumps(text, ensure_ascii=False)
