"""Prometheus metrics of the daemon on 127.0.0.1:[metrics] port (optional extra `metrics`).

Cumulative counts (API calls, 429 answers, failed syncs, push results) are counters, so
`rate()` and `increase()` work across restarts; states (lag, records, KPI values) are
gauges. The sync lag is computed when Prometheus scrapes, so it keeps growing while a
source fails. Without `[metrics] enabled` every call here is a no-op.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kpi_core.settings import MetricsSettings

PREFIX = "helpdesk_kpi"
INSTALL_HINT = "needs the prometheus-client package: pip install 'helpdesk-kpi[metrics]'"

# name -> help text; docs/operations.md lists the same names, and a test reads them from here.
METRIC_NAMES: dict[str, str] = {
    f"{PREFIX}_sync_lag_seconds": "Seconds since the source's last successful sync",
    f"{PREFIX}_last_success_timestamp_seconds": "Unix time of the source's last successful sync",
    f"{PREFIX}_records": "Contacts (tickets, conversations) stored for the source",
    f"{PREFIX}_quarantined_records": "Records of the source set aside because they could not be normalized",
    f"{PREFIX}_api_calls_total": "API calls made to the source",
    f"{PREFIX}_throttled_total": "429 (rate limited) answers from the source",
    f"{PREFIX}_sync_errors_total": "Syncs of the source that failed",
    f"{PREFIX}_consecutive_failures": "Failed syncs of the source since its last success (0 when healthy)",
    f"{PREFIX}_push_results_total": "Write-back results by helpdesk and outcome",
    f"{PREFIX}_kpi_value": "Current KPI value by KPI id, period start and segment",
}


class MetricsUnavailable(Exception):
    """[metrics] enabled but prometheus-client is not installed, or the port cannot be bound."""


class Metrics:
    """The no-op face; `PrometheusMetrics` records for real."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def source_state(self, source: str, *, last_success: float | None, records: int, quarantined: int,
                     consecutive_failures: int) -> None:
        pass

    def sync_counts(self, source: str, *, api_calls: int, throttled: int, failed: bool) -> None:
        pass

    def push_results(self, helpdesk: str, outcomes: Mapping[str, int]) -> None:
        pass

    def kpi_values(self, values: Iterable[tuple[str, str, Mapping[str, Any], float | None]]) -> None:
        pass


class PrometheusMetrics(Metrics):
    """Metrics in their own registry, served by prometheus-client's HTTP server."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise MetricsUnavailable(INSTALL_HINT) from None
        self._prom = prom
        disable_created: Any = getattr(prom, "disable_created_metrics", None)
        if disable_created is not None:
            disable_created()  # one `_created` series per counter is noise here
        self.host, self.port = host, port
        self.registry = prom.CollectorRegistry(auto_describe=True)
        self._server: Any = None
        self._last_success: dict[str, float] = {}
        self._lock = threading.Lock()
        self._kpi_series: set[tuple[str, str, str]] = set()
        n = METRIC_NAMES

        def gauge(name: str, labels: tuple[str, ...]) -> Any:
            return prom.Gauge(name, n[name], labels, registry=self.registry)

        def counter(name: str, labels: tuple[str, ...]) -> Any:
            # prometheus-client adds the `_total` suffix itself.
            return prom.Counter(name.removesuffix("_total"), n[name], labels, registry=self.registry)

        self.lag = gauge(f"{PREFIX}_sync_lag_seconds", ("source",))
        self.last_success = gauge(f"{PREFIX}_last_success_timestamp_seconds", ("source",))
        self.records = gauge(f"{PREFIX}_records", ("source",))
        self.quarantined = gauge(f"{PREFIX}_quarantined_records", ("source",))
        self.api_calls = counter(f"{PREFIX}_api_calls_total", ("source",))
        self.throttled = counter(f"{PREFIX}_throttled_total", ("source",))
        self.errors = counter(f"{PREFIX}_sync_errors_total", ("source",))
        self.failures = gauge(f"{PREFIX}_consecutive_failures", ("source",))
        self.push = counter(f"{PREFIX}_push_results_total", ("helpdesk", "outcome"))
        self.kpi = gauge(f"{PREFIX}_kpi_value", ("kpi", "period_start", "segment"))

    def start(self) -> None:
        try:
            self._server, _ = self._prom.start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            raise MetricsUnavailable(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _lag_of(self, source: str) -> float:
        with self._lock:
            at = self._last_success.get(source)
        return time.time() - at if at is not None else float("nan")

    def source_state(self, source: str, *, last_success: float | None, records: int, quarantined: int,
                     consecutive_failures: int) -> None:
        with self._lock:
            known = source in self._last_success
            if last_success is not None:
                self._last_success[source] = last_success
                self.last_success.labels(source).set(last_success)
        if not known:
            self.lag.labels(source).set_function(lambda: self._lag_of(source))
            for counter in (self.api_calls, self.throttled, self.errors):
                counter.labels(source)  # present at 0 from the start, so rate() has a baseline
        self.records.labels(source).set(records)
        self.quarantined.labels(source).set(quarantined)
        self.failures.labels(source).set(consecutive_failures)

    def sync_counts(self, source: str, *, api_calls: int, throttled: int, failed: bool) -> None:
        self.api_calls.labels(source).inc(api_calls)
        self.throttled.labels(source).inc(throttled)
        if failed:
            self.errors.labels(source).inc()

    def push_results(self, helpdesk: str, outcomes: Mapping[str, int]) -> None:
        for outcome, count in outcomes.items():
            self.push.labels(helpdesk, outcome).inc(count)

    def kpi_values(self, values: Iterable[tuple[str, str, Mapping[str, Any], float | None]]) -> None:
        """Replace the KPI gauges with the latest computed values (kpi, period start, segment, value)."""
        series: set[tuple[str, str, str]] = set()
        for kpi, period_start, segment, value in values:
            labels = (kpi, period_start, json.dumps(dict(segment), sort_keys=True, separators=(",", ":")))
            self.kpi.labels(*labels).set(float("nan") if value is None else value)
            series.add(labels)
        for stale in self._kpi_series - series:
            self.kpi.remove(*stale)
        self._kpi_series = series


def metrics_from(settings: MetricsSettings) -> Metrics:
    """The metrics the configuration asks for; raises MetricsUnavailable when they cannot work."""
    return PrometheusMetrics(settings.port) if settings.enabled else Metrics()
