"""The report's figures as the page shows them: KPI lines with their previous value, segment rows, diagnostics,
contact reasons and source health, with the labels people read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from kpi_core.kpis.catalogue import KPIS
from kpi_core.kpis.periods import Period
from kpi_core.report.formatting import Change, change, value_text

META: Final = {k.id: k for k in KPIS}


@dataclass(frozen=True)
class Line:
    """One KPI figure: the engine's row, its catalogue entry and the same figure one period earlier."""

    row: dict[str, Any]
    previous: dict[str, Any] | None = None

    @property
    def kpi(self) -> str:
        return str(self.row["kpi"])

    @property
    def name(self) -> str:
        meta = META.get(self.kpi)
        return meta.name if meta else self.kpi

    @property
    def definition(self) -> str:
        meta = META.get(self.kpi)
        return meta.definition if meta else ""

    @property
    def direction(self) -> str | None:
        meta = META.get(self.kpi)
        return meta.direction.value if meta and meta.direction else None

    @property
    def change(self) -> Change | None:
        before = self.previous["value"] if self.previous else None
        return change(self.row["value"], before, self.direction)

    @property
    def segment_json(self) -> str:
        return json.dumps(self.row["segment"], separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class LineGroup:
    title: str
    lines: list[Line]


@dataclass(frozen=True)
class SegmentRow:
    """A row of a per-segment table (a language, an agent): its label and one Line per KPI column."""

    value: str | None
    label: str
    cells: dict[str, Line]
    detail: str | None = None  # shown small beside the label: an agent's helpdesk id beside their name


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic that fired in one period, with every segment it fired for and the figures that made it."""

    id: str
    title: str
    period: Period
    message: str
    findings: list[tuple[dict[str, Any], dict[str, Any]]]  # (segment, evidence)

    @property
    def evidence_labels(self) -> list[str]:
        keys = list(dict.fromkeys(k for _, evidence in self.findings for k in evidence))
        return [evidence_line(k, None)[0] for k in keys]

    @property
    def rows(self) -> list[tuple[dict[str, Any], list[str]]]:
        """Per segment, the evidence figures in the order of `evidence_labels` (a dash where one is absent)."""
        keys = list(dict.fromkeys(k for _, evidence in self.findings for k in evidence))
        return [(segment, [evidence_line(k, evidence[k])[1] if k in evidence else "\u2014" for k in keys])
                for segment, evidence in self.findings]


@dataclass(frozen=True)
class Reason:
    name: str
    volume: int
    share_pct: float | None
    previous_volume: int
    change: Change | None


@dataclass(frozen=True)
class SourceHealth:
    name: str
    state: str  # ok | late | failing | never
    last_success_at: str | None
    lag_seconds: int | None
    records: int
    api_calls_last_run: int
    failures_since_success: int
    quarantined: int
    last_error: str | None
    next_sync_at: str | None


LANGUAGE_NAMES: Final = {
    "ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "nb": "Norwegian", "nl": "Dutch", "no": "Norwegian",
    "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sv": "Swedish", "th": "Thai",
    "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}


# Platforms as their makers spell them (catalogue 2c's ids); others show the id with spaces.
PLATFORM_NAMES: Final = {
    "whatsapp": "WhatsApp", "instagram": "Instagram", "facebook": "Facebook Messenger", "tiktok": "TikTok",
    "line": "LINE", "wechat": "WeChat", "telegram": "Telegram", "viber": "Viber", "sms": "SMS",
    "twitter": "X (Twitter)", "apple_messages": "Apple Messages", "google_rcs": "Google RCS",
    "marketplace": "Marketplace", "web_chat": "Web chat", "mobile_app": "Mobile app", "web_form": "Web form",
    "email": "E-mail", "api": "API", "phone": "Phone",
}


def segment_label(dimension: str, value: Any) -> str:
    if value is None:
        return {"agent": "unassigned", "group": "no group"}.get(dimension, "none")
    if dimension == "language":
        return "unknown" if value == "und" else f"{LANGUAGE_NAMES.get(value, value)} ({value})"
    if dimension == "platform":
        return PLATFORM_NAMES.get(value, str(value).replace("_", " "))
    return str(value).replace("_", " ") if dimension == "channel" else str(value)


def describe_segment(segment: dict[str, Any]) -> str:
    if not segment:
        return "all contacts"
    return ", ".join(f"{dim} {segment_label(dim, value)}" for dim, value in segment.items())


DIAGNOSTIC_TITLES: Final = {
    "fast_reply_slow_resolution": "Fast first reply, slow resolution",
    "csat_hides_unanswered": "CSAT hides unanswered contacts",
    "nps_lags_csat": "NPS and CSAT move apart",
    "closed_but_unhappy": "Closed fast, customer unhappy",
    "coverage_gap_by_language": "A language is left behind",
    "volume_spike": "Volume spike",
}


def evidence_line(key: str, value: Any) -> tuple[str, str]:
    """('Overall: Response rate', '97.8 %') for ('overall_response_rate_pct', 97.7778)."""
    prefix = next((p for p in ("overall_", "previous_") if key.startswith(p)), "")
    meta = META.get(key[len(prefix):])
    name = meta.name if meta else key[len(prefix):].replace("_", " ")
    label = f"{prefix[:-1].capitalize()}: {name}" if prefix else name
    unit = meta.unit if meta else "count"
    if isinstance(value, (list, tuple)):
        return label, " \u2192 ".join(value_text(v, unit) for v in value)
    return label, value_text(value, unit)
