"""`topics suggest`: candidate phrases for `[insight] topics`, from recent first customer messages read live.

Also what `check-config` says of conversation insight: its topic rules checked (every bad rule named
by its key), and which analyzers are installed.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from connectors import registry
from connectors.base import AuthError, Connector, PermissionDenied, RetryableApiError, SyncError, Unreachable
from connectors.checking import host_of
from connectors.settings import ConnectorSettings
from kpi_core.cli_common import EXIT_FAILED, EXIT_OK, UsageError, command, err, out, settings_from
from kpi_core.insight.analyzer import Analyzer
from kpi_core.insight.language import METHOD as LANGUAGE_METHOD
from kpi_core.insight.sentiment import METHODS as SENTIMENT_METHODS
from kpi_core.insight.topics import TopicRuleError, TopicRules
from kpi_core.settings import ConfigProblem, Settings
from kpi_core.topic_phrases import LanguagePhrases, suggest, toml_snippet
from kpi_core.topic_sample import (
    CannotSample,
    FirstMessage,
    Sample,
    SampleProgress,
    read_first_messages,
    reading_bodies,
)

MAX_DAYS = 90  # a sample is of recent contacts: a longer look reads more than a suggestion needs


def _sources(settings: Settings, wanted: str | None) -> list[str]:
    plugins = registry.plugins()
    helpdesks = [n for n in settings.enabled_connectors() if n in plugins and plugins[n].helpdesk]
    if wanted is not None and wanted not in helpdesks:
        raise UsageError(f"--source {wanted}: not a configured and enabled helpdesk"
                         f" (enabled: {', '.join(helpdesks) or 'none'})")
    if not helpdesks:
        raise UsageError("no helpdesk source is enabled in the configuration")
    return [wanted] if wanted else helpdesks


def _host(connector: Connector, section: ConnectorSettings) -> str:
    """host[:port] the connector reads (its HTTP client's base URL), for error messages."""
    client: Any = getattr(connector, "client", None)
    base = getattr(client, "base_url", "") or section.base_url
    return host_of(base) if base else "its API"


def _failure(name: str, host: str, exc: Exception) -> str:
    """One sentence naming the source and host; never a token or a message's text."""
    if isinstance(exc, CannotSample):
        return str(exc)
    if isinstance(exc, AuthError):
        return f"{name}: {host} rejected the credentials (401); check the token in [connectors.{name}]"
    if isinstance(exc, PermissionDenied):
        return f"{name}: {host} refused to list tickets and their messages (403); the token needs an admin's access"
    if isinstance(exc, Unreachable):
        return f"{name}: cannot reach {exc.host}"
    if isinstance(exc, RetryableApiError):
        return f"{name}: {host} still answered {exc.status} after the retries; try again later"
    detail = str(exc).removeprefix(f"{name}: ")  # the connector's messages start with its name already
    return f"{name} ({host}): {detail}"


class _Progress:
    """Days read and messages found, one self-rewriting line on stderr when it is a terminal."""

    def __init__(self) -> None:
        self.active = sys.stderr.isatty()
        self.width = 0

    def __call__(self, p: SampleProgress) -> None:
        if self.active:
            text = (f"{p.source}: read {p.days_read} of {p.days} days, {p.messages:,} first messages,"
                    f" {p.api_calls:,} API calls")
            sys.stderr.write("\r" + text.ljust(self.width))
            sys.stderr.flush()
            self.width = len(text)

    def done(self) -> None:
        if self.active and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def _read(settings: Settings, name: str, since: datetime, until: datetime, sample: int, progress: _Progress
          ) -> tuple[Sample, int]:
    """The source's sample and the API calls spent; raises _SourceFailed with the sentence to print."""
    section = settings.connectors[name]
    try:
        connector = registry.build_connector(name, reading_bodies(section))
    except SyncError as exc:  # settings the connector cannot work with (a missing token)
        raise _SourceFailed(f"{name}: {str(exc).removeprefix(f'{name}: ')}") from None
    try:
        found = read_first_messages(connector, name, since=since, until=until, sample=sample, on_progress=progress)
        return found, connector.api_calls
    except (SyncError, CannotSample) as exc:
        raise _SourceFailed(_failure(name, _host(connector, section), exc)) from None
    finally:
        progress.done()
        connector.close()


class _SourceFailed(Exception):
    """One source could not be sampled; the message is the sentence to print."""


def _check_counts(args: argparse.Namespace) -> None:
    if not 1 <= args.days <= MAX_DAYS:
        raise UsageError(f"--days {args.days}: give 1 to {MAX_DAYS} days")
    for flag, value in (("--sample", args.sample), ("--top", args.top), ("--min-count", args.min_count)):
        if value < 1:
            raise UsageError(f"{flag} {value}: give a number of 1 or more")


@command("topics")
def cmd_topics(args: argparse.Namespace) -> int:
    """Suggest topic rules: frequent phrases of recent first customer messages, read live and never stored."""
    _check_counts(args)
    settings = settings_from(args)
    try:
        rules = TopicRules(settings.insight.topics)
    except TopicRuleError as exc:
        raise UsageError(f"{exc} (`helpdesk-kpi check-config` lists every bad rule)") from None
    names = _sources(settings, args.source)
    until = datetime.now(timezone.utc).replace(microsecond=0)
    since = until - timedelta(days=args.days)
    progress = _Progress()
    messages: list[FirstMessage] = []
    read: dict[str, int] = {}
    calls = 0
    failed = False
    for name in names:
        try:
            found, spent = _read(settings, name, since, until, args.sample, progress)
        except _SourceFailed as exc:
            err(str(exc))
            failed = True
            continue
        if found.without_text:
            err(f"{name}: {found.without_text:,} first customer messages came without their text (the helpdesk"
                " did not serve it to this read); they are left out of the sample")
        messages += found.messages
        read[name] = len(found.messages)
        calls += spent
    if read:
        analyzer = Analyzer(rules)
        detected = [(m.text, analyzer.language(m.text)) for m in messages]
        total = len(detected)
        wanted = args.language.lower() if args.language else None
        if wanted:
            detected = [(text, lang) for text, lang in detected if lang == wanted]
        found_phrases = suggest(detected, rules, top=args.top, min_count=args.min_count)
        per_source = ", ".join(f"{n} {c:,}" for n, c in read.items())
        out(f"Sampled {len(messages):,} first customer messages of contacts created since"
            f" {since:%Y-%m-%d %H:%M} UTC ({per_source}; {calls:,} API calls); nothing was stored.")
        _print(found_phrases, total, wanted, args.min_count)
    return EXIT_FAILED if failed else EXIT_OK


def _print(found: list[LanguagePhrases], total: int, wanted: str | None, min_count: int) -> None:
    if not found:
        out(f"No sampled message is in {wanted}." if wanted else "No first customer message with text was found.")
        return
    for language in found:
        share = 100.0 * language.messages / total if total else 0.0
        matched = 100.0 * language.matched / language.messages
        out("")
        out(f"{language.language}: {language.messages:,} messages ({share:.1f}% of the sample);"
            f" {language.matched:,} ({matched:.1f}%) already get a topic")
        if language.note:
            out(f"  ({language.note})")
        if not language.phrases:
            if not language.note:
                out(f"  no phrase is in {min_count} or more of its messages")
            continue
        width = max(len("phrase"), *(len(p.text) for p in language.phrases))
        out(f"  {'phrase'.ljust(width)}  messages   share  covered by")
        for p in language.phrases:
            covered = f"{p.covered_by} ({p.covered_pct:g}%)" if p.covered_by else "-"
            mark = "  (in most messages: a greeting rather than a topic?)" if p.common else ""
            out(f"  {p.text.ljust(width)}  {p.count:>8,}  {p.share_pct:>5.1f}%  {covered}{mark}")
    snippet = toml_snippet(found)
    out("")
    if not snippet:
        out("# Every phrase found is covered by a topic already.")
        return
    out("# Candidate rules for the phrases no topic covers yet, ready to paste into the configuration: rename and")
    out("# merge the topics; where a [insight.topics.<language>] table exists, add the lines to it instead.")
    out("# New rules apply to contacts synced from then on (the text is not kept to apply them to earlier ones).")
    out(snippet)


# --- check-config ----------------------------------------------------------------------------


def check_insight(path: Path, settings: Settings) -> list[str]:
    """check-config's lines on conversation insight; raises ConfigProblem naming each topic rule that cannot
    be compiled (`insight.topics.<lang>.<topic>`), whether or not insight is enabled."""
    problems: list[tuple[str, str]] = []
    for language, topics in settings.insight.topics.items():
        for topic, rules in topics.items():
            where = f"insight.topics.{language}.{topic}"
            try:
                TopicRules({language: {topic: rules}})
            except TopicRuleError as exc:
                problems.append((where, str(exc).removeprefix(where).strip()))
    if problems:
        raise ConfigProblem(path, problems)
    configured = settings.insight.topics
    count = sum(len(t) for t in configured.values())
    told = f"{count} topics for {', '.join(configured)}" if count else "no topic rules"
    if not settings.insight.enabled:
        return [f"  insight: off ({told} checked; message text is not read during the sync)"]
    return [f"  insight: on; {told}",
            f"    language detector: {_installed(LANGUAGE_METHOD)}",
            f"    sentiment: {_sentiment_methods()}"]


def _installed(distribution: str) -> str:
    try:
        return f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return f"{distribution} NOT INSTALLED (no language is detected)"


def _sentiment_methods() -> str:
    """The languages with a sentiment method, each with its package; any method whose package is missing."""
    have, missing = [], []
    for language, method in sorted(SENTIMENT_METHODS.items()):
        try:
            have.append(f"{language} ({method.distribution} {metadata.version(method.distribution)})")
        except metadata.PackageNotFoundError:
            missing.append(f"{language} ({method.distribution} not installed)")
    text = ", ".join(have) or "no language"
    return text + (f"; missing: {', '.join(missing)}" if missing else "") + "; other languages get no score"


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("topics", parents=[common], help=cmd_topics.__doc__,
                       epilog="Reads message text in memory whether or not [insight] is enabled; opens no store,"
                              " moves no cursor. Topic rules apply at sync time to each contact's first customer"
                              " message, so a rule added later applies to contacts synced from then on.")
    p.add_argument("action", choices=("suggest",),
                   help="suggest: print frequent phrases per language and a TOML snippet of candidate rules")
    p.add_argument("--source", help="only this helpdesk (default: every enabled one, each sampled on its own)")
    p.add_argument("--days", type=int, default=14, help="contacts created in the last N days (default: 14)")
    p.add_argument("--sample", type=int, default=500,
                   help="first messages read per source at most, the most recent first (default: 500)")
    p.add_argument("--language", help="only messages detected in this language (ISO 639-1 code, e.g. de)")
    p.add_argument("--top", type=int, default=20, help="phrases shown per language (default: 20)")
    p.add_argument("--min-count", type=int, default=3,
                   help="a phrase must be in at least this many messages (default: 3; keeps names and numbers out)")
