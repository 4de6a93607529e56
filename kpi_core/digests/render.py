"""A digest as an e-mail body (self-contained HTML, every style inline) and as plain text.

Both read the same figures with the report's formatting helpers, so a value reads the same in the
report, the digest and its text part.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from kpi_core.digests.gather import Digest, Figure, Finding
from kpi_core.kpis.scorecard import evidence_sentence
from kpi_core.report import formatting as F
from kpi_core.report.figures import describe_segment
from kpi_core.report.render import environment


def _evidence(finding: Finding) -> str:
    return evidence_sentence(finding.diagnostic, finding.evidence)


def _where(finding: Finding) -> str:
    return ", ".join(describe_segment(segment) for segment in finding.segments)


def html(digest: Digest) -> str:
    env = environment(ZoneInfo(digest.zone))
    env.filters["evidence"] = _evidence
    env.filters["where"] = _where
    return env.get_template("digest.html.j2").render(d=digest).lstrip() + "\n"


def _change(f: Figure) -> str:
    if f.change is None:
        return ""
    verdict = f" ({f.change.verdict})" if f.change.verdict in ("better", "worse") else ""
    return f"{f.change.text(f.unit)}{verdict}"


def text(digest: Digest) -> str:
    """The plain-text part: the same sections, one line per figure."""
    volume = F.value_text(digest.volume, "count") if digest.volume is not None else F.NO_DATA
    lines = [digest.title, f"{digest.span} ({digest.zone}) against {digest.previous.label()}; {volume} contacts", ""]
    if digest.events:
        lines.append("Events in this period:")
        lines += [f"  {e.dates}  {e.title}" + (f" ({e.segment_text})" if e.segment else "") for e in digest.events]
        lines.append("")
    lines.append("Key figures")
    for f in digest.figures:
        status = F.status_label(f.status)
        target = F.target_text(f.target, f.unit, f.direction)
        lines.append(f"  {f.name}: {F.value_text(f.value, f.unit)} (before {F.value_text(f.previous, f.unit)})"
                     f"{'  ' + _change(f) if f.change else ''}; target {target}; {status}")
    if not digest.figures:
        lines.append(f"  {F.NO_DATA}: nothing was computed for this period.")
    lines += ["", "Biggest movers"]
    for label, items in (("worse", digest.worse), ("better", digest.better)):
        for f in items:
            before = F.value_text(f.previous, f.unit)
            lines.append(f"  {label}: {f.name} {F.value_text(f.value, f.unit)} (before {before},"
                         f" {100 * (f.relative or 0):+.0f} %)")
    if not digest.worse and not digest.better:
        lines.append("  No KPI with a better direction moved.")
    lines += ["", "Diagnostics"]
    for finding in digest.findings:
        lines.append(f"  {finding.diagnostic} ({_where(finding)}): {finding.message}")
        lines.append(f"    {_evidence(finding)}")
    if not digest.diagnostics:
        lines.append(f"  No diagnostic fired in {digest.period.label()}.")
    lines += ["", "Top contact reasons"]
    for r in digest.reasons:
        change = f"{r['change_pct']:+.0f} %" if r["change_pct"] is not None else "new"
        share = F.value_text(r["share_pct"], "%")
        lines.append(f"  {r['reason']}: {r['volume']:,} contacts ({share}), before {r['previous_volume']:,} ({change})")
    if not digest.reasons:
        lines.append("  No contact reasons in this period.")
    return "\n".join(lines).rstrip() + "\n"


def slack_lines(digest: Digest) -> list[str]:
    """The digest as short lines for a chat message (the webhook's `slack` style)."""
    lines = [f"{digest.span} ({digest.zone}) against {digest.previous.label()}"]
    if digest.events:
        lines.append("*Events:* " + "; ".join(e.title for e in digest.events))
    lines += [f"*{f.name}*: {F.value_text(f.value, f.unit)}  {_change(f)}  {F.status_icon(f.status)}".rstrip()
              for f in digest.figures]
    if digest.worse:
        lines.append("*Moved worse:* " + "; ".join(f"{f.name} {100 * (f.relative or 0):+.0f} %" for f in digest.worse))
    if digest.better:
        lines.append("*Moved better:* " + "; ".join(f"{f.name} {100 * (f.relative or 0):+.0f} %"
                                                   for f in digest.better))
    lines += [f":warning: {finding.message} ({_where(finding)})" for finding in digest.findings]
    if digest.reasons:
        lines.append("*Top reasons:* " + ", ".join(f"{r['reason']} ({r['volume']:,})" for r in digest.reasons))
    return lines
