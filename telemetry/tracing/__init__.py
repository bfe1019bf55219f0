"""The OpenTelemetry side: one sampler, one provider, one export pipeline fanned out to
every span sink, the propagator and the library instrumentations."""

from telemetry.tracing.instrumentation import MissingExtraError
from telemetry.tracing.propagation import DynamicSamplingContext, TelemetryPropagator
from telemetry.tracing.provider import build_resource, build_tracer_provider, jaeger_exporter
from telemetry.tracing.sampling import RouteAwareSampler, RoutePatterns

__all__ = [
    "DynamicSamplingContext",
    "MissingExtraError",
    "RouteAwareSampler",
    "RoutePatterns",
    "TelemetryPropagator",
    "build_resource",
    "build_tracer_provider",
    "jaeger_exporter",
]
