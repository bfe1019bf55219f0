"""The OpenTelemetry side: provider, resource, and the export pipeline of each sink.

Every sink gets the same chain, so a sink in trouble looks the same everywhere::

    BoundedBatchSpanProcessor (bounded queue, counts drops)
      -> MonitoredSpanExporter (counts exported/failed, logs a failing sink once)
        -> scrubbing exporter (one policy for every sink)
          -> the sink's exporter (OTLP http/protobuf or gRPC, file, ...)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Sampler

from telemetry.settings import TelemetrySettings

__all__ = [
    "BoundedBatchSpanProcessor",
    "MonitoredSpanExporter",
    "PipelineCounters",
    "build_resource",
    "build_tracer_provider",
    "jaeger_exporter",
    "shutdown_within",
]

logger = logging.getLogger("telemetry.pipeline")

ExporterWrapper = Callable[[SpanExporter], SpanExporter]


class PipelineCounters(Protocol):
    """The self-metrics the pipeline reports (implemented by ``telemetry.metrics``)."""

    def spans_exported(self, sink: str, count: int) -> None: ...
    def spans_failed(self, sink: str, count: int) -> None: ...
    def spans_dropped(self, sink: str, count: int) -> None: ...


class NullCounters:
    """Counts nothing: the pipeline when metrics are off."""

    def spans_exported(self, sink: str, count: int = 1) -> None:
        return None

    def spans_failed(self, sink: str, count: int = 1) -> None:
        return None

    def spans_dropped(self, sink: str, count: int = 1) -> None:
        return None

    def sentry_event_sent(self, kind: str, count: int = 1) -> None:
        return None

    def sentry_event_dropped(self, kind: str, reason: str, count: int = 1) -> None:
        return None


def build_resource(settings: TelemetrySettings) -> Resource:
    return Resource.create(
        {
            "service.name": settings.service_name,
            "service.version": settings.service_version or "0.0.0",
            "deployment.environment": settings.environment.value,
            "deployment.environment.name": settings.environment.value,
        }
    )


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


class BoundedBatchSpanProcessor(BatchSpanProcessor):
    """A batch processor whose queue drops (and counts) spans once full, so a slow sink
    costs bounded memory and never blocks the request."""

    def __init__(
        self,
        sinks: Sequence[str],
        exporter: SpanExporter,
        counters: PipelineCounters,
        *,
        max_queue_size: int,
        export_timeout_millis: float,
    ) -> None:
        super().__init__(
            exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=min(512, max_queue_size),
            export_timeout_millis=export_timeout_millis,
            schedule_delay_millis=1000,
        )
        self.sinks = tuple(sinks)
        self.exporter = exporter
        self.counters = counters
        self.max_queue_size = max_queue_size

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled:
            return
        if len(self._batch_processor._queue) >= self.max_queue_size:
            # Every sink fed from this queue loses the span.
            for sink in self.sinks:
                self.counters.spans_dropped(sink, 1)
        super().on_end(span)

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        timeout_millis = 30000 if timeout_millis is None else timeout_millis
        # The batch processor hands its queue to the exporter but does not wait for an
        # exporter that sends on threads of its own (the OTLP fan-out): ask it too.
        exported = super().force_flush(timeout_millis)
        return self.exporter.force_flush(timeout_millis) and exported


def jaeger_exporter(settings: TelemetrySettings) -> SpanExporter | None:
    """The OTLP exporter for Jaeger (or a collector), per the standard OTel variables."""
    endpoint = settings.jaeger_traces_endpoint
    if endpoint is None:
        return None
    timeout = settings.export_timeout_seconds
    if settings.otlp_protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError as exc:
            from telemetry.tracing.instrumentation import MissingExtraError

            raise MissingExtraError("grpc", "opentelemetry-exporter-otlp-proto-grpc") from exc
        return GrpcSpanExporter(endpoint=endpoint, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)


def sink_processor(
    sink: str,
    exporter: SpanExporter,
    settings: TelemetrySettings,
    counters: PipelineCounters,
    wrap: ExporterWrapper | None,
) -> tuple[BoundedBatchSpanProcessor, MonitoredSpanExporter]:
    monitored = MonitoredSpanExporter(sink, wrap(exporter) if wrap else exporter, counters)
    processor = BoundedBatchSpanProcessor(
        [sink],
        monitored,
        counters,
        max_queue_size=settings.span_queue_size,
        export_timeout_millis=settings.export_timeout_seconds * 1000,
    )
    return processor, monitored


def build_tracer_provider(
    settings: TelemetrySettings,
    sampler: Sampler,
    processors: Sequence[SpanProcessor],
) -> TracerProvider:
    provider = TracerProvider(resource=build_resource(settings), sampler=sampler)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def shutdown_within(action: Callable[[], object], timeout_s: float, what: str) -> bool:
    """Run a shutdown step on a daemon thread and give up after ``timeout_s``: a sink that
    is down or black-holed must not hang the service's shutdown."""
    done = threading.Event()

    def run() -> None:
        try:
            action()
        except Exception as exc:
            logger.warning("telemetry_shutdown_step_failed step=%s error=%r", what, exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"telemetry-shutdown-{what}", daemon=True).start()
    finished = done.wait(timeout_s)
    if not finished:
        logger.warning("telemetry_shutdown_timeout step=%s timeout_s=%s", what, timeout_s)
    return finished


class SpanAttributeSetter(SpanProcessor):
    """Adds fixed attributes at span start (e.g. Sentry's profiler id for linking)."""

    def __init__(self, attributes: Callable[[], dict[str, str]]) -> None:
        self.attributes = attributes

    def on_start(self, span: Span, parent_context: object = None) -> None:
        if span.is_recording():
            span.set_attributes(self.attributes())
