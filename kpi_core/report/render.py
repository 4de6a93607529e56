"""The page: Jinja2 templates (package data under `templates/`) filled with the gathered figures and charts."""

from __future__ import annotations

import json
from datetime import timezone, tzinfo
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from kpi_core.report import formatting as F
from kpi_core.report.charts import Chart
from kpi_core.report.charts import render as render_chart
from kpi_core.report.figures import describe_segment, segment_label
from kpi_core.report.gather import ReportData
from kpi_core.report.trends import trend_specs


def _json_attr(value: Any) -> str:
    """A value as JSON for a data- attribute (machine-readable twin of the text shown)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def environment(zone: tzinfo = timezone.utc) -> Environment:
    """The templates' environment; `time` shows a stored UTC time in `zone`, the account's."""
    env = Environment(loader=PackageLoader("kpi_core.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update({
        "value": F.value_text, "exact": F.exact_text, "status_icon": F.status_icon, "status_label": F.status_label,
        "time": lambda iso: F.time_text(iso, zone), "age": F.age_text, "json": _json_attr, "target": F.target_text,
        "segment": describe_segment, "thousands": lambda n: f"{n:,}",
    })
    env.globals.update({"segment_label": segment_label, "NO_DATA": F.NO_DATA})
    return env


def render_html(data: ReportData) -> str:
    """The whole report as one self-contained HTML document."""
    charts: list[Chart] = [] if data.empty else [render_chart(spec) for spec in trend_specs(data)]
    template = environment(data.tz).get_template("report.html.j2")
    return template.render(data=data, win=data.window, charts=charts).lstrip() + "\n"
