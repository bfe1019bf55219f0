"""Health of the telemetry pipeline itself, in ``/metrics``: what each span sink accepted,
refused or never got, and what sentry-sdk sent or discarded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from telemetry.metrics.cardinality import LabelGuard
from telemetry.metrics.prometheus_internals import metric_name

__all__ = ["PipelineMetrics"]


class PipelineMetrics:
    """Health of the telemetry pipeline itself; the exporter and transport wrappers call it."""

    def __init__(self, registry: CollectorRegistry, guard: LabelGuard) -> None:
        self._guard = guard

        def counter(name: str, documentation: str, labels: list[str]) -> Counter:
            return Counter(name, documentation, labels, registry=registry)

        self._exported = counter("telemetry_spans_exported", "Spans a sink accepted.", ["sink"])
        self._failed = counter("telemetry_spans_failed", "Spans a sink failed to take.", ["sink"])
        self._dropped = counter(
            "telemetry_spans_dropped", "Spans dropped (queue full or shut down).", ["sink"]
        )
        self._sent = counter("telemetry_sentry_events_sent", "Items sentry-sdk sent.", ["kind"])
        self._lost = counter(
            "telemetry_sentry_events_dropped", "Items sentry-sdk discarded.", ["kind", "reason"]
        )

    def _bound(self, counter: Counter, label: str, value: str) -> str:
        return self._guard.bound(f"{metric_name(counter)}_total", label, value)

    def spans_exported(self, sink: str, count: int = 1) -> None:
        self._exported.labels(self._bound(self._exported, "sink", sink)).inc(count)

    def spans_failed(self, sink: str, count: int = 1) -> None:
        self._failed.labels(self._bound(self._failed, "sink", sink)).inc(count)

    def spans_dropped(self, sink: str, count: int = 1) -> None:
        self._dropped.labels(self._bound(self._dropped, "sink", sink)).inc(count)

    def sentry_event_sent(self, kind: str, count: int = 1) -> None:
        self._sent.labels(self._bound(self._sent, "kind", kind)).inc(count)

    def sentry_event_dropped(self, kind: str, reason: str, count: int = 1) -> None:
        kind = self._bound(self._lost, "kind", kind)
        self._lost.labels(kind, self._bound(self._lost, "reason", reason)).inc(count)
