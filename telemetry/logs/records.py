"""Log record enrichment: what every record gets where it is created, before any handler
sees it. Trace context (``trace_id``, ``span_id``, ``trace_sampled``), the scrubbed message,
arguments, exception and stack text, and, for a record sentry-sdk will turn into an event,
the ``sentry_event_id`` that event is then made to use.

``telemetry.logs`` installs this (record factory, filter) and formats the result.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
import uuid
from collections.abc import Callable
from fnmatch import fnmatch
from typing import Any

import sentry_sdk
from opentelemetry import trace
from sentry_sdk.integrations import logging as sentry_logging

from telemetry.scrubbing import ScrubbingPolicy
from telemetry.shared import EXCEPTION_TRACE_ATTRIBUTE, REPORTED_EVENT_ATTRIBUTE

__all__ = [
    "OWN_ATTRS",
    "RecordFactory",
    "ScrubOnEmit",
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
            record.msg = policy.scrub_text(record.msg)
        return
    if len(formatted) > policy.max_length:
        # Bounded before any regex runs: a 10 MB message costs what an 8 KiB one does.
        record.msg, record.args = policy.scrub_text(formatted), ()
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
    add_trace_context(record)  # a record the factory never saw
    _scrub_message(record, policy)
    if record.exc_info and not record.exc_text:
        # Pre-rendered so every standard Formatter prints this scrubbed text.
        record.exc_text = _bounded(policy, _format_exception(record.exc_info, policy.max_length))
    elif record.exc_text:
        record.exc_text = _bounded(policy, record.exc_text)
    if record.stack_info:
        record.stack_info = _bounded(policy, record.stack_info)


def _format_exception(exc_info: Any, limit: int) -> str:
    """``Formatter.formatException``, with each message in the chain cut to ``limit``
    before the traceback text is built (a 10 MB message is never copied into it)."""
    try:
        te = traceback.TracebackException(*exc_info, compact=True)
        pending, seen = [te], set()
        while pending:
            item = pending.pop()
            if id(item) in seen:
                continue
            seen.add(id(item))
            text = getattr(item, "_str", None)  # the message, stored at construction
            if isinstance(text, str) and len(text) > limit:
                item._str = f"{text[:limit]}...[truncated, {len(text)} chars]"  # type: ignore[attr-defined]
            pending += [e for e in (item.__cause__, item.__context__) if e is not None]
            pending += list(getattr(item, "exceptions", None) or ())
        return "".join(te.format()).rstrip("\n")
    except Exception:
        return _PLAIN.formatException(exc_info)


def _bounded(policy: ScrubbingPolicy, text: str) -> str:
    """A traceback scrubbed within ``max_length``: its head (the outer frames) and its tail
    (the innermost frame and the message) kept, the middle of a huge message cut, each
    part bounded before the regexes run."""
    limit = policy.max_length
    if len(text) <= limit:
        return policy.scrub_text(text)
    half = limit // 2
    head = policy.scrub_text(text[:half], truncate=False)
    tail = policy.scrub_text(text[-half:], truncate=False)
    return f"{head}\n...[truncated, {len(text)} chars]...\n{tail}"


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
    exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
    reported = getattr(exc, REPORTED_EVENT_ATTRIBUTE, None)
    if isinstance(reported, str) and len(reported) == 32:
        # The error was already sent (captured inside the request): this line names that
        # event; the one sentry-sdk would make of this record is a duplicate, dropped.
        record.sentry_event_id = reported
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


def add_trace_context(record: logging.LogRecord) -> None:
    """The cheap part of the enrichment, done where the record is created (in the caller's
    context, where its span is current): ids only, no formatting, no scanning."""
    if not hasattr(record, "trace_id"):
        ids = _current_ids()
        if not ids[0] and isinstance(record.exc_info, tuple):
            # Written after the request's span ended (uvicorn's "Exception in ASGI
            # application"): the exception remembers the span it escaped.
            remembered = getattr(record.exc_info[1], EXCEPTION_TRACE_ATTRIBUTE, None)
            if isinstance(remembered, tuple) and len(remembered) == 3:
                ids = remembered
        record.trace_id, record.span_id, record.trace_sampled = ids


class RecordFactory:
    """Records get their trace context (and Sentry event id) where they are created; the
    scrubbing waits until a handler emits them (:class:`ScrubOnEmit`), so a record no
    handler takes costs no formatting and no regex."""

    def __init__(self, previous: Callable[..., logging.LogRecord], policy: ScrubbingPolicy):
        self.previous = previous
        self.policy = policy
        self.active = True

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if self.active:
            with contextlib.suppress(Exception):  # logging must never fail for telemetry
                add_trace_context(record)
                _assign_sentry_event_id(record)
        return record


class ScrubOnEmit:
    """Wraps ``logging.Handler.handle``: every handler, the app's own included, receives
    the record scrubbed, and only records some handler takes are ever scrubbed.

    sentry-sdk's handlers are left out: its events, and the breadcrumbs they carry, are
    scrubbed by ``before_send`` with the same policy."""

    def __init__(self, policy: ScrubbingPolicy) -> None:
        self.policy = policy
        self.active = True
        self.original = logging.Handler.handle

    def install(self) -> None:
        original, scrub = self.original, self

        def handle(handler: logging.Handler, record: logging.LogRecord) -> Any:
            if scrub.active and not type(handler).__module__.startswith("sentry_sdk"):
                with contextlib.suppress(Exception):
                    enrich_record(record, scrub.policy)
            return original(handler, record)

        logging.Handler.handle = handle  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        self.active = False  # if someone wrapped it since, it becomes a pass-through
        if getattr(logging.Handler.handle, "__qualname__", "").endswith("install.<locals>.handle"):
            logging.Handler.handle = self.original  # type: ignore[method-assign]
