"""The health of one span sink: what it accepted, refused or never got, counted in
``/metrics``, and one log line when it starts failing and one when it recovers."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry.shared import PipelineCounters

__all__ = ["MonitoredSpanExporter", "SinkHealth"]

logger = logging.getLogger("telemetry.pipeline")


class SinkHealth:
    """What one sink accepted, refused or never got, in ``/metrics``; and one log line when
    it starts failing and one when it recovers, instead of one per batch."""

    def __init__(self, sink: str, counters: PipelineCounters) -> None:
        self.sink = sink
        self.counters = counters
        self.failing = False
        self.reported_failing = False
        self.last_report = -float("inf")
        self.quiet_period_s = 60.0
        self.disabled_reason: str | None = None

    def succeeded(self, count: int) -> None:
        self.counters.spans_exported(self.sink, count)
        if self.failing:
            self.failing = False
            if self.reported_failing:
                self.reported_failing = False
                logger.warning("telemetry_sink_recovered sink=%s", self.sink)

    def failed(self, count: int) -> None:
        self.counters.spans_failed(self.sink, count)
        if self.failing or self.disabled_reason is not None:
            return
        self.failing = True
        # A flapping sink is reported once per quiet period, not at every flip.
        now = time.monotonic()
        if not self.reported_failing and now - self.last_report >= self.quiet_period_s:
            self.reported_failing = True
            self.last_report = now
            logger.warning(
                "telemetry_sink_failing sink=%s: spans are counted in "
                "telemetry_spans_failed_total until it recovers",
                self.sink,
            )

    def dropped(self, count: int) -> None:
        self.counters.spans_dropped(self.sink, count)

    def disable(self, reason: str) -> None:
        """Stop sending to this sink for good (e.g. the server has no OTLP ingestion)."""
        if self.disabled_reason is None:
            self.disabled_reason = reason
            logger.warning("telemetry_sink_disabled sink=%s reason=%s", self.sink, reason)


class MonitoredSpanExporter(SpanExporter):
    """A sink's exporter, with its health counted and logged (see ``SinkHealth``)."""

    def __init__(self, sink: str, wrapped: SpanExporter, counters: PipelineCounters) -> None:
        self.sink = sink
        self.wrapped = wrapped
        self.health = SinkHealth(sink, counters)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.health.disabled_reason is not None:
            self.health.dropped(len(spans))
            return SpanExportResult.FAILURE
        try:
            result = self.wrapped.export(spans)
        except Exception as exc:  # an exporter bug must not kill the export thread
            logger.debug("exporter for sink %s raised", self.sink, exc_info=exc)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.health.succeeded(len(spans))
        else:
            self.health.failed(len(spans))
        return result

    def shutdown(self) -> None:
        self.wrapped.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.wrapped.force_flush(timeout_millis)
