"""The Sentry side: sentry-sdk for errors, the events' filters and transport, the per-request
scope, and the Sentry arm of the span fan-out (``otlp`` or ``envelope``)."""

from telemetry.sentry.asgi import (
    RequestContextMiddleware,
    RequestScopeMiddleware,
    enable_task_capture,
)
from telemetry.sentry.breadcrumbs import SentryBreadcrumbs
from telemetry.sentry.client import (
    existing_sentry_options,
    init_sentry,
    profiler_span_attributes,
    sentry_otlp_target,
)
from telemetry.sentry.envelope import envelope_span_processor
from telemetry.sentry.events import build_before_send
from telemetry.sentry.scrubbing import EventScrubber
from telemetry.sentry.sdk_internals import recording_transport_class
from telemetry.sentry.transport import counting_transport

__all__ = [
    "EventScrubber",
    "RequestContextMiddleware",
    "RequestScopeMiddleware",
    "SentryBreadcrumbs",
    "build_before_send",
    "counting_transport",
    "enable_task_capture",
    "envelope_span_processor",
    "existing_sentry_options",
    "init_sentry",
    "profiler_span_attributes",
    "recording_transport_class",
    "sentry_otlp_target",
]
