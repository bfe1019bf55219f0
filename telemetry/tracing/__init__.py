"""The OpenTelemetry side: one sampler, one provider, one export pipeline fanned out to
every span sink, the propagator and the library instrumentations."""

from telemetry.tracing.conventions import derived_attributes
from telemetry.tracing.exceptions import (
    ExceptionTextGuard,
    harden_exception_recording,
    safe_exception_text,
)
from telemetry.tracing.fanout import FanOutExporter
from telemetry.tracing.gate import (
    PresetIdGenerator,
    SamplingGate,
    install_sampling_gate,
    skip_unsampled_statements,
)
from telemetry.tracing.health import MonitoredSpanExporter, SinkHealth
from telemetry.tracing.instrumentation import (
    Instrumented,
    MissingExtraError,
    instrument_fastapi,
    instrument_libraries,
)
from telemetry.tracing.propagation import (
    DynamicSamplingContext,
    PropagationTargets,
    TelemetryPropagator,
    build_propagator,
)
from telemetry.tracing.provider import (
    BoundedBatchSpanProcessor,
    SpanAttributeSetter,
    SpanContextAttributes,
    build_resource,
    build_tracer_provider,
    jaeger_exporter,
    shutdown_within,
    sink_processor,
)
from telemetry.tracing.routes import (
    RouteOf,
    ServerSpanRoute,
    native_telemetry_supported,
    use_native_telemetry,
)
from telemetry.tracing.sampling import RouteAwareSampler, RoutePatterns
from telemetry.tracing.scrubbing import ScrubbingSpanExporter, scrub_span

__all__ = [
    "BoundedBatchSpanProcessor",
    "DynamicSamplingContext",
    "ExceptionTextGuard",
    "FanOutExporter",
    "Instrumented",
    "MissingExtraError",
    "MonitoredSpanExporter",
    "PresetIdGenerator",
    "PropagationTargets",
    "RouteAwareSampler",
    "RouteOf",
    "RoutePatterns",
    "SamplingGate",
    "ScrubbingSpanExporter",
    "ServerSpanRoute",
    "SinkHealth",
    "SpanAttributeSetter",
    "SpanContextAttributes",
    "TelemetryPropagator",
    "build_propagator",
    "build_resource",
    "build_tracer_provider",
    "derived_attributes",
    "harden_exception_recording",
    "install_sampling_gate",
    "instrument_fastapi",
    "instrument_libraries",
    "jaeger_exporter",
    "native_telemetry_supported",
    "safe_exception_text",
    "scrub_span",
    "shutdown_within",
    "sink_processor",
    "skip_unsampled_statements",
    "use_native_telemetry",
]
