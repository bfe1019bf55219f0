"""telemetry: one ``setup_telemetry(app)`` for Sentry, Jaeger, Prometheus and Grafana,
under one trace id. See the README for the configuration contract."""

from telemetry.api import (
    capture_exception,
    capture_message,
    set_context,
    set_tag,
    set_user_context,
    start_span,
    start_transaction,
)
from telemetry.genai import start_agent, start_llm_call, start_tool
from telemetry.settings import TelemetryConfigError, TelemetrySettings
from telemetry.setup import TelemetryHandle, setup_telemetry
from telemetry.tracing import MissingExtraError

__all__ = [
    "MissingExtraError",
    "TelemetryConfigError",
    "TelemetryHandle",
    "TelemetrySettings",
    "capture_exception",
    "capture_message",
    "set_context",
    "set_tag",
    "set_user_context",
    "setup_telemetry",
    "start_agent",
    "start_llm_call",
    "start_span",
    "start_tool",
    "start_transaction",
]
