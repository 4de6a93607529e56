"""Conversation insight during the sync: bodies analysed in memory, only derived values stored.

A sandbox of the three helpdesks (their fakes on loopback, the world's multilingual message
bodies) is synced for real into a SQLite store with `[insight] enabled`. The first syncs go
newest first (the backfill's threads) where the connector can, so both storing paths are covered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Page
from connectors.sandbox import Sandbox
from kpi_core.insight.analyzer import Analyzer
from kpi_core.insight_pass import InsightPass
from kpi_core.kpis import api
from kpi_core.kpis.columns import SUFFIX
from kpi_core.settings import InsightSettings, Settings, load_settings
from kpi_core.store import Store, open_store
from kpi_core.sync import sync_all

HELPDESKS = ("zendesk", "intercom", "freshdesk")
pytestmark = pytest.mark.sandbox(seed=11, tickets=60, names=HELPDESKS)
INSIGHT = '[insight]\nenabled = true\nescalation_groups = ["Tier 2"]\n'


def _bodies(box: Sandbox) -> set[str]:
    """Every message text of the world long enough to be found by chance in no other byte of the store."""
    return {m.body for source in HELPDESKS for t in box.world.tickets(source) for m in t.messages
            if m.body and len(m.body) >= 12}


def _store_bytes(path: Path) -> bytes:
    """The store's file, its WAL and the KPI engine's columnar copy (and its WAL), as they lie on disk."""
    found = b""
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}{SUFFIX}"), Path(f"{path}{SUFFIX}.wal")):
        if candidate.exists():
            found += candidate.read_bytes()
    return found


def _synced(box: Sandbox, folder: Path, extra: str) -> tuple[Settings, Store, Path]:
    folder.mkdir()
    path = folder / "store.sqlite"
    config = folder / "helpdesk-kpi.toml"
    config.write_text(box.config_toml(str(path)) + "\n" + extra)
    config.chmod(0o600)
    settings = load_settings(config)
    store = open_store(path)
    results = sync_all(store, settings, sources=HELPDESKS)
    assert all(r.ok for r in results), [r.error for r in results]
    return settings, store, path


@pytest.fixture(scope="module")
def insight_run(module_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[Settings, Store, Path]]:
    settings, store, path = _synced(module_sandbox, tmp_path_factory.mktemp("insight") / "on", INSIGHT)
    yield settings, store, path
    store.close()


def test_insight_keeps_no_message_text_in_any_byte_of_the_store(module_sandbox: Sandbox,
                                                                insight_run: tuple[Settings, Store, Path]) -> None:
    settings, store, path = insight_run
    bodies = _bodies(module_sandbox)
    assert len(bodies) > 30  # the world wrote real text (in several languages) for the connectors to read
    # Older months were filled by the backfill's threads (the other storing path), for some source at least.
    assert store.db.execute("SELECT count(*) FROM backfill_windows WHERE done = 1").fetchone()[0] > 0
    # Something was read from those texts: languages of most messages, some scores, the derived facts.
    counts = store.db.execute("SELECT count(*), count(language), count(sentiment), count(body) FROM messages"
                              ).fetchone()
    assert counts[1] > counts[0] / 2 and counts[2] > 0 and counts[3] == 0
    assert store.db.execute("SELECT count(detected_language), count(reply_language) FROM contacts").fetchone() > (0, 0)
    while_open = _store_bytes(path)  # the WAL holds the sync's pages until a checkpoint
    assert Path(f"{path}-wal").exists()
    api.compute(store, settings, grains=["month"], segments=[[]])  # the columnar copy, with the insight facts
    assert Path(f"{path}{SUFFIX}").exists()
    assert store.db.execute("SELECT count(*) FROM kpi_values WHERE kpi = 'reply_language_match_pct'"
                            " AND value IS NOT NULL").fetchone()[0] > 0
    on_disk = while_open + _store_bytes(path)
    leaked = [b for b in bodies if b.encode() in on_disk]
    assert not leaked, f"{len(leaked)} message texts found in the store's files, e.g. {leaked[0]!r}"


def test_with_store_message_bodies_the_bodies_are_stored_as_before(module_sandbox: Sandbox, tmp_path: Path) -> None:
    _, store, path = _synced(module_sandbox, tmp_path / "kept", INSIGHT + "[privacy]\nstore_message_bodies = true\n")
    try:
        stored = {row[0] for row in store.db.execute("SELECT body FROM messages WHERE body IS NOT NULL")}
        assert _bodies(module_sandbox) & stored  # the world's own texts, not a placeholder
        assert any(b.encode() in _store_bytes(path) for b in _bodies(module_sandbox))  # the byte search finds them
        # ... and analysed all the same.
        assert store.db.execute("SELECT count(*) FROM messages WHERE body IS NOT NULL AND language IS NOT NULL"
                                ).fetchone()[0] > 0
    finally:
        store.close()


def test_insight_off_analyses_nothing_and_reads_no_bodies(module_sandbox: Sandbox, tmp_path: Path) -> None:
    settings, store, _ = _synced(module_sandbox, tmp_path / "off", "")
    try:
        assert InsightPass.from_settings(settings) is None
        assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] > 100
        assert store.db.execute("SELECT count(body), count(language), count(sentiment), count(topic) FROM messages"
                                ).fetchone() == (0, 0, 0, 0)
        assert store.db.execute("SELECT count(detected_language), count(reply_language), count(first_sentiment),"
                                " count(topic) FROM contacts").fetchone() == (0, 0, 0, 0)
        api.compute(store, settings, grains=["month"], segments=[[]])
        values = store.db.execute("SELECT DISTINCT value FROM kpi_values WHERE kpi IN ('reply_language_match_pct',"
                                  " 'negative_contact_pct', 'sentiment_recovery_pct')").fetchall()
        assert values == [(None,)]  # no data: no value, never 0 %
    finally:
        store.close()


# --- the pass on one page, without a sync -------------------------------------------------------------------------


def _page(rows: list[dict[str, Any]]) -> Page:
    return Page(records={"messages": [{"source": "zendesk", "source_id": str(i), "contact_id": "1",
                                       "created_at": "2026-03-01T09:00:00Z", "public": True, **row}
                                      for i, row in enumerate(rows)]})


def test_replies_get_their_language_only_and_unknown_authors_the_whole_analysis() -> None:
    page = _page([
        {"author_role": "customer", "body": "My parcel never arrived and nobody answers, this is terrible."},
        {"author_role": None, "author_id": "7", "body": "Ich warte seit zwei Wochen auf meine Bestellung, das nervt."},
        {"author_role": "agent", "body": "Thank you for your patience, your order ships today."},
        {"author_role": "customer", "body": None},
        {"author_role": None, "author_id": "9", "body": "Vielen Dank für Ihre Geduld, wir prüfen Ihre Bestellung."},
        {"author_role": "system", "body": "Your request was received and will be answered within a day."},
    ])
    insight = InsightPass(Analyzer.from_settings(InsightSettings(enabled=True)))
    asked: list[tuple[str, set[str]]] = []

    def roles(source: str, ids: set[str]) -> dict[str, str]:  # as the people table knows them (Zendesk)
        asked.append((source, ids))
        return {"9": "agent"}

    insight.apply(page, roles)
    customer, unknown, agent, empty, known_agent, automation = page.records["messages"]
    assert (customer["language"], unknown["language"], agent["language"]) == ("en", "de", "en")
    assert customer["sentiment"] is not None and customer["sentiment"] < 0
    assert "sentiment" in unknown and "sentiment" not in agent and "topic" not in agent
    assert known_agent["language"] == "de" and "sentiment" not in known_agent
    assert asked == [("zendesk", {"7", "9"})]
    assert "language" not in empty and "language" not in automation  # nothing read of either
    assert all(row["body"] is None for row in page.records["messages"])
    assert insight.analysed == 4


def test_an_analyser_failure_stores_the_page_without_insight_and_quotes_no_text(
        caplog: pytest.LogCaptureFixture) -> None:
    secret = "Mein Passwort ist Sommer2026 und meine Karte endet auf 4242"

    class Failing(Analyzer):
        def analyze_many(self, texts: Any) -> Any:
            raise ValueError(f"cannot read {texts[0]!r}")

    page = _page([{"author_role": "customer", "body": secret}])
    with caplog.at_level(logging.DEBUG):
        InsightPass(Failing.from_settings(InsightSettings(enabled=True))).apply(page)
    row = page.records["messages"][0]
    assert row["body"] is None and "language" not in row
    assert page.warnings == ["conversation insight could not analyse 1 messages; they are stored without"
                             " language, sentiment or topic"]
    assert "Sommer2026" not in caplog.text and "ValueError" in caplog.text


def test_a_bad_topic_rule_stops_the_source_before_anything_is_read(module_sandbox: Sandbox,
                                                                   config_for: Callable[..., Path]) -> None:
    path = config_for(module_sandbox, '[insight]\nenabled = true\n[insight.topics.en]\nrefund = ["re:(unclosed"]\n')
    settings = load_settings(path)
    store = open_store(path.parent / "store.sqlite")
    try:
        results = sync_all(store, settings, sources=("zendesk",))
        assert not results[0].ok and "conversation insight cannot start" in (results[0].error or "")
        assert "insight.topics.en" in (results[0].error or "") and "unexpected" not in (results[0].error or "")
        assert store.count("messages") == 0
    finally:
        store.close()
