"""Log record enrichment: what every record gets where it is created, before any handler
sees it. Trace context (``trace_id``, ``span_id``, ``trace_sampled``), the scrubbed message,
arguments, exception and stack text, and, for a record sentry-sdk will turn into an event,
the ``sentry_event_id`` that event is then made to use.

``telemetry.logs`` installs this (record factory, filter) and formats the result.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from fnmatch import fnmatch
from typing import Any

import sentry_sdk
from opentelemetry import trace
from sentry_sdk.integrations import logging as sentry_logging

from telemetry.scrubbing import ScrubbingPolicy

__all__ = [
    "OWN_ATTRS",
    "RecordFactory",
    "TraceContextFilter",
    "adopt_record_event_id",
    "enrich_record",
    "sentry_ignored",
]

# What enrichment adds to a record (formatters and extra= handling must tell them apart).
OWN_ATTRS = frozenset({"trace_id", "span_id", "trace_sampled", "sentry_event_id"})
_DONE = "_telemetry_enriched"
_PLAIN = logging.Formatter()


def _current_ids() -> tuple[str, str, bool]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return "", "", False
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), ctx.trace_flags.sampled


def _scrub_message(record: logging.LogRecord, policy: ScrubbingPolicy) -> None:
    try:
        formatted = record.getMessage()
    except Exception:  # bad args: logging reports it at emit time; still scrub the template
        if isinstance(record.msg, str):
            record.msg = policy.scrub_text(record.msg, truncate=False)
        return
    if policy.scrub_text(formatted, truncate=False) == formatted:
        return  # the common case: nothing to do
    # Keep the shape of args where possible: uvicorn's AccessFormatter unpacks exactly
    # five args, and Sentry groups events by the message template.
    if isinstance(record.msg, str):
        record.msg = policy.scrub_text(record.msg)
    record.args = policy.scrub_value(record.args) if record.args else record.args
    try:
        candidate = record.getMessage()
        clean = policy.scrub_text(candidate, truncate=False) == candidate
    except Exception:
        clean = False
    if not clean:  # the secret spans several args ("%s=%s", "token", value): flatten
        record.msg, record.args = policy.scrub_text(formatted), ()


def enrich_record(record: logging.LogRecord, policy: ScrubbingPolicy) -> None:
    """Add trace context and scrub the record in place; a second call does nothing."""
    if getattr(record, _DONE, False):
        return
    setattr(record, _DONE, True)
    record.trace_id, record.span_id, record.trace_sampled = _current_ids()
    _scrub_message(record, policy)
    if record.exc_info and not record.exc_text:
        # Pre-rendered so every standard Formatter prints this scrubbed text; the end of
        # a traceback (innermost frame, message) is what truncation must keep.
        record.exc_text = policy.scrub_text(_PLAIN.formatException(record.exc_info), tail=True)
    elif record.exc_text:
        record.exc_text = policy.scrub_text(record.exc_text, tail=True)
    if record.stack_info:
        record.stack_info = policy.scrub_text(record.stack_info, tail=True)


def _sentry_event_level() -> int | None:
    """The level from which sentry-sdk's logging integration turns records into events."""
    client = sentry_sdk.get_client()
    if not client.is_active():
        return None
    integration = client.get_integration(sentry_logging.LoggingIntegration)
    handler = getattr(integration, "_handler", None)
    return handler.level if isinstance(handler, logging.Handler) else None


def sentry_ignored() -> set[str]:
    # sentry-sdk keeps its ignore list private; read it defensively across versions.
    ignored = getattr(sentry_logging, "_IGNORED_LOGGERS", None)
    return ignored if isinstance(ignored, set) else set()


def _assign_sentry_event_id(record: logging.LogRecord) -> None:
    # sentry-sdk captures a record as an event *after* the logger's own handlers have
    # written it (its patched Logger.callHandlers calls them first), so the log line
    # cannot read the id back. Instead the id is chosen here, before any handler runs,
    # and adopt_record_event_id makes the Sentry event use it.
    if record.levelno < logging.WARNING:
        return
    level = _sentry_event_level()
    if level is None or record.levelno < level:
        return
    name = record.name.strip()
    if any(fnmatch(name, pattern) for pattern in sentry_ignored()):
        return
    record.sentry_event_id = uuid.uuid4().hex


def adopt_record_event_id(event: Any, hint: Any) -> Any:
    """Global Sentry event processor: an event made from a log record takes its id."""
    record = hint.get("log_record") if isinstance(hint, dict) else None
    event_id = getattr(record, "sentry_event_id", None)
    if event_id and isinstance(event, dict) and event.get("type") is None:
        event["event_id"] = event_id
        extra = event.get("extra")
        if isinstance(extra, dict):
            extra.pop("sentry_event_id", None)
    return event


class TraceContextFilter(logging.Filter):
    """Handler/logger filter form of the enrichment, for records the factory never saw."""

    def __init__(self, policy: ScrubbingPolicy | None = None) -> None:
        super().__init__()
        self.policy = policy or ScrubbingPolicy.default()

    def filter(self, record: logging.LogRecord) -> bool:
        enrich_record(record, self.policy)
        return True


class RecordFactory:
    def __init__(self, previous: Callable[..., logging.LogRecord], policy: ScrubbingPolicy):
        self.previous = previous
        self.policy = policy
        self.active = True

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if self.active:
            with contextlib.suppress(Exception):  # logging must never fail for telemetry
                enrich_record(record, self.policy)
                _assign_sentry_event_id(record)
        return record
