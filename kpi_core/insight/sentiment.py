"""A customer message's sentiment, -1 (negative) to 1 (positive), by a lexicon method per language.

Each method installs from a package and runs offline. A language without a method gives None: a
score from another language's lexicon would be a guess. Which packages, and how well each does
on the labelled sample the tests ship, is in docs/insight.md.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

# VADER's customary cut-offs for its compound score; the other methods are read on the same scale.
NEGATIVE_BELOW = -0.05
POSITIVE_ABOVE = 0.05

Scorer = Callable[[str], float]
_lock = threading.Lock()


@dataclass(frozen=True)
class Method:
    """A sentiment method: the distribution that provides it and how to build its scorer."""

    distribution: str
    load: Callable[[], Scorer]


def _vader_compound(analyzer: Any) -> Scorer:
    return lambda text: float(analyzer.polarity_scores(text)["compound"])


def _english() -> Scorer:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return _vader_compound(SentimentIntensityAnalyzer())


def _french() -> Scorer:
    with warnings.catch_warnings():  # its fuzzy matcher warns that a faster optional backend is missing
        warnings.simplefilter("ignore")
        from vaderSentiment_fr.vaderSentiment import SentimentIntensityAnalyzer

    return _vader_compound(SentimentIntensityAnalyzer())


def _dutch() -> Scorer:
    from textblob_nl import PatternAnalyzer

    analyzer = PatternAnalyzer()
    return lambda text: float(analyzer.analyze(text)[0])


METHODS: dict[str, Method] = {
    "en": Method("vaderSentiment", _english),
    "fr": Method("vadersentiment-fr", _french),
    "nl": Method("textblob-nl", _dutch),
}


def sentiment_languages() -> frozenset[str]:
    """The languages that have a sentiment method."""
    return frozenset(METHODS)


_scorers: dict[str, Scorer] = {}


def _scorer(language: str) -> Scorer:
    """The language's scorer, built on first use and kept for the life of the process."""
    scorer = _scorers.get(language)
    if scorer is None:
        with _lock:  # two sync threads must not build the same lexicon twice
            scorer = _scorers.get(language)
            if scorer is None:
                scorer = _scorers[language] = METHODS[language].load()
    return scorer


def score(text: str, language: str | None) -> float | None:
    """The text's sentiment in -1..1 by its language's method; None when the language has none."""
    if not text or language not in METHODS:
        return None
    value = _scorer(language)(text)
    return max(-1.0, min(1.0, value))


def polarity(score: float | None) -> Literal["negative", "neutral", "positive"] | None:
    """The score's class by the cut-offs; None for no score."""
    if score is None:
        return None
    if score < NEGATIVE_BELOW:
        return "negative"
    if score > POSITIVE_ABOVE:
        return "positive"
    return "neutral"
