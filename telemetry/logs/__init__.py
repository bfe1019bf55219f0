"""Correlated, scrubbed logs: every record carries the trace id of its request."""

from telemetry.logs.install import (
    ConsoleFormatter,
    JsonFormatter,
    LoggingHandle,
    install_logging,
    log_lifecycle,
)
from telemetry.logs.records import TraceContextFilter, enrich_record

__all__ = [
    "ConsoleFormatter",
    "JsonFormatter",
    "LoggingHandle",
    "TraceContextFilter",
    "enrich_record",
    "install_logging",
    "log_lifecycle",
]
