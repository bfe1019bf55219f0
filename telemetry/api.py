"""The facade an application calls: errors, messages, user, tags, context and spans.

Spans made here are OpenTelemetry spans, so they reach Sentry and Jaeger alike; events go
to Sentry with the active span's trace id. Keyword context becomes a Sentry context on that
one event, never part of the message and never carried to later events.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sentry_sdk
from opentelemetry import trace

from telemetry.shared import KEEP_ATTRIBUTE, TRANSACTION_ATTRIBUTE

__all__ = [
    "bind_tracer",
    "capture_exception",
    "capture_message",
    "normalize_level",
    "set_context",
    "set_tag",
    "set_user_context",
    "start_span",
    "start_transaction",
    "tracer",
]

_tracer: trace.Tracer = trace.get_tracer("telemetry")


def tracer() -> trace.Tracer:
    """The tracer the facade's spans come from (the one ``setup_telemetry`` bound)."""
    return _tracer


def bind_tracer(tracer: trace.Tracer | None) -> None:
    """Make the facade's spans come from the provider ``setup_telemetry`` built (OTel's
    global provider can be set only once per process; ours can be rebuilt)."""
    global _tracer
    _tracer = tracer if tracer is not None else trace.get_tracer("telemetry")


#: The name under which keyword context appears on an event.
CONTEXT_NAME = "context"

_LEVELS = {
    "debug": "debug",
    "info": "info",
    "information": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "exception": "error",
    "critical": "fatal",
    "fatal": "fatal",
}


def normalize_level(level: str) -> str:
    """Sentry's level for a Sentry or Python logging level name, in any case.

    Sentry's ingestion turns a level it does not know into ``error``, which would misfile
    a warning; an unknown name is refused here instead.
    """
    normalized = _LEVELS.get(str(level).strip().lower())
    if normalized is None:
        accepted = ", ".join(sorted(set(_LEVELS)))
        raise ValueError(f"unknown level {level!r}; accepted (any case): {accepted}")
    return normalized


def _scoped_context(scope: Any, context: Mapping[str, Any]) -> None:
    if context:
        scope.set_context(CONTEXT_NAME, dict(context))


def capture_exception(exc: BaseException, **context: Any) -> str | None:
    """Send a handled exception to Sentry with ``context`` as structured data.

    Returns the Sentry event id, or None when Sentry is off or the event was filtered.
    The exception is also recorded on the active span, so Jaeger shows it too.
    """
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc, attributes={"exception.escaped": False})
        # A trace with a reported error is one a tail sampler (collector mode) must keep.
        span.set_attribute(KEEP_ATTRIBUTE, True)
    with sentry_sdk.new_scope() as scope:
        _scoped_context(scope, context)
        return sentry_sdk.capture_exception(exc)


def capture_message(message: str, level: str = "info", **context: Any) -> str | None:
    """Send a message event; ``level`` takes Sentry's and Python logging's names."""
    sentry_level = normalize_level(level)
    with sentry_sdk.new_scope() as scope:
        _scoped_context(scope, context)
        return sentry_sdk.capture_message(message, level=sentry_level)  # type: ignore[arg-type]


def set_user_context(
    user_id: str | int,
    email: str | None = None,
    username: str | None = None,
    tenant_id: str | int | None = None,
) -> None:
    """Attach the user to this request's events (the request's own Sentry scope) and to
    its server span (``enduser.id`` and Sentry's ``user.id``, ``tenant.id``: no email or
    name leaves for Jaeger)."""
    user: dict[str, Any] = {"id": str(user_id)}
    if email is not None:
        user["email"] = email
    if username is not None:
        user["username"] = username
    if tenant_id is not None:
        user["tenant_id"] = str(tenant_id)
        sentry_sdk.set_tag("tenant_id", str(tenant_id))
    sentry_sdk.set_user(user)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("enduser.id", str(user_id))
        span.set_attribute("user.id", str(user_id))  # the transaction's user in otlp mode
        if tenant_id is not None:
            span.set_attribute("tenant.id", str(tenant_id))


def set_tag(key: str, value: str | int | float | bool) -> None:
    sentry_sdk.set_tag(key, value)


def set_context(name: str, data: Mapping[str, Any]) -> None:
    sentry_sdk.set_context(name, dict(data))


def _op_attributes(op: str) -> dict[str, str]:
    if op.startswith("gen_ai.") and len(op) > len("gen_ai."):
        return {"gen_ai.operation.name": op.removeprefix("gen_ai.")}
    return {"sentry.op": op}


@contextmanager
def start_transaction(name: str, op: str) -> Iterator[trace.Span]:
    """A unit of work (a Sentry transaction when it has no parent; otherwise a child of the
    current span, so one request stays one trace)."""
    with _tracer.start_as_current_span(
        name,
        attributes={**_op_attributes(op), "sentry.description": name, TRANSACTION_ATTRIBUTE: True},
    ) as span:
        yield span


@contextmanager
def start_span(op: str, description: str | None = None) -> Iterator[trace.Span]:
    """A child span of the current span, named by its description (or its op).

    A ``gen_ai.*`` op becomes ``gen_ai.operation.name`` instead of a forced ``sentry.op``:
    Relay derives the op from it, and Sentry's AI views read that attribute."""
    attributes = _op_attributes(op)
    if description:
        attributes["sentry.description"] = description
    with _tracer.start_as_current_span(description or op, attributes=attributes) as span:
        yield span
