"""Local file sinks: what the no-server demo writes instead of Sentry and Jaeger."""

from telemetry.file_sinks.files import (
    SENTRY_EVENTS_FILE,
    SPANS_FILE,
    JsonLinesAppender,
    OTLPJsonFileSpanExporter,
    SentryFileTransport,
    otlp_json,
)

__all__ = [
    "SENTRY_EVENTS_FILE",
    "SPANS_FILE",
    "JsonLinesAppender",
    "OTLPJsonFileSpanExporter",
    "SentryFileTransport",
    "otlp_json",
]
