"""The health of one span sink: what it accepted, refused or never got, counted in
``/metrics``, and one log line when it starts failing and one when it recovers."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry.shared import FailureLog, PipelineCounters

__all__ = ["MonitoredSpanExporter", "SinkHealth"]

logger = logging.getLogger("telemetry.pipeline")


class SinkHealth:
    """What one sink accepted, refused or never got, in ``/metrics``; and one log line when
    it starts failing and one when it recovers, instead of one per batch (``FailureLog``)."""

    def __init__(self, sink: str, counters: PipelineCounters) -> None:
        self.sink = sink
        self.counters = counters
        self.log = FailureLog(sink, "spans are counted in telemetry_spans_failed_total", logger)
        self.disabled_reason: str | None = None

    @property
    def failing(self) -> bool:
        return self.log.failing

    def succeeded(self, count: int) -> None:
        self.counters.spans_exported(self.sink, count)
        self.log.succeeded()

    def failed(self, count: int) -> None:
        self.counters.spans_failed(self.sink, count)
        if self.disabled_reason is None:
            self.log.failed()

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
