"""The OpenTelemetry side: provider, resource, and the bounded batch queue of each sink.

Two export chains, with the same health accounting (``health``) so a sink in trouble
looks the same in ``/metrics`` and the logs either way:

* OTLP/HTTP sinks (Jaeger or the Collector, Sentry's OTLP endpoint) share one queue and
  one scrub-and-encode per batch, then one sender each (``fanout``);
* any other exporter (OTLP gRPC, the file sink) gets a chain of its own
  (:func:`sink_processor`): bounded queue -> ``MonitoredSpanExporter`` -> scrubbing
  exporter -> the exporter.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import SpanKind

from telemetry.settings import TelemetrySettings
from telemetry.shared import TRANSACTION_ATTRIBUTE, PipelineCounters
from telemetry.tracing.gate import PresetIdGenerator
from telemetry.tracing.health import MonitoredSpanExporter

__all__ = [
    "BoundedBatchSpanProcessor",
    "SpanContextAttributes",
    "build_resource",
    "build_tracer_provider",
    "jaeger_exporter",
    "shutdown_within",
]

logger = logging.getLogger("telemetry.pipeline")

ExporterWrapper = Callable[[SpanExporter], SpanExporter]


def build_resource(settings: TelemetrySettings) -> Resource:
    """``OTEL_RESOURCE_ATTRIBUTES`` as given; the contract's own names win where they are
    set (``service.name`` and ``service.version`` already fall back to it in settings)."""
    given = settings.resource_attribute_map
    attributes: dict[str, str] = {
        **given,
        "service.name": settings.service_name,
        "service.version": settings.service_version or "0.0.0",
    }
    environment_given = "environment" in settings.model_fields_set
    for key in ("deployment.environment", "deployment.environment.name"):
        if environment_given or key not in given:
            attributes[key] = settings.environment.value
    return Resource.create(attributes)


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
        from grpc import Compression as GrpcCompression

        # TLS settings: the gRPC exporter reads the standard certificate variables itself.
        return GrpcSpanExporter(
            endpoint=endpoint,
            timeout=timeout,
            headers=settings.otlp_header_map or None,
            compression=(
                GrpcCompression.Gzip
                if settings.otlp_compression == "gzip"
                else GrpcCompression.NoCompression
            ),
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=endpoint,
        timeout=timeout,
        headers=settings.otlp_header_map or None,
        compression=Compression.Gzip
        if settings.otlp_compression == "gzip"
        else Compression.NoCompression,
        certificate_file=str(settings.otlp_certificate) if settings.otlp_certificate else None,
    )


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
    # Preset ids: the request gate decides a new trace on its id before the span exists.
    provider = TracerProvider(
        resource=build_resource(settings), sampler=sampler, id_generator=PresetIdGenerator()
    )
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


class SpanContextAttributes(SpanProcessor):
    """What sentry-sdk puts on its spans and OTel's instrumentations do not, set at start.

    Every span: ``thread.id``/``thread.name`` (OTel's semantic names, which Sentry reads
    as span data). A segment span (no local parent: a request's server span, a
    ``start_transaction``, a span continuing a caller) also gets the attributes Sentry
    builds the transaction's fields from in ``otlp`` mode: ``sentry.release``,
    ``sentry.environment``, ``sentry.platform`` (Relay's span schema) and
    ``sentry.span.source`` (``route`` for a server span with a route template, ``custom``
    for a named transaction, ``url`` otherwise). One mapping per thread and one for
    segments are reused, so a span costs two ``set_attributes`` calls, no new dict.
    Without Sentry (``segment`` empty) only the thread is set.
    """

    def __init__(self, segment: Mapping[str, str]) -> None:
        self._segment = {k: v for k, v in segment.items() if v}
        self._local = threading.local()

    def _thread_attributes(self) -> dict[str, int | str]:
        thread = threading.current_thread()
        cached: dict[str, int | str] | None = getattr(self._local, "attributes", None)
        if cached is None or cached["thread.name"] != thread.name:
            cached = {"thread.id": thread.ident or 0, "thread.name": thread.name}
            self._local.attributes = cached
        return cached

    def on_start(self, span: Span, parent_context: object = None) -> None:
        if not span.is_recording():
            return
        span.set_attributes(self._thread_attributes())
        parent = span.parent
        if not self._segment or (parent is not None and not parent.is_remote):
            return
        span.set_attributes(self._segment)
        attributes = span.attributes or {}
        if attributes.get("http.route") is not None:
            source = "route"
        elif attributes.get(TRANSACTION_ATTRIBUTE):
            source = "custom"
        elif span.kind is SpanKind.SERVER:
            source = "url"
        else:
            return
        span.set_attribute("sentry.span.source", source)
