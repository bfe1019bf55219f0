"""Recording an exception on a span must never replace the exception being recorded.

OpenTelemetry formats an escaping exception twice while it propagates: ``record_exception``
calls ``str(exc)`` and ``traceback.format_exception``, and ``use_span`` builds the status
description with ``f"{type(exc).__name__}: {exc}"``. An exception whose ``__str__`` raises
then replaces the application's exception with the formatting error (the span loses its
exception event, and every layer above captures a different error); a 10 MB message is
copied into the span twice and held until export.

:func:`harden_exception_recording` makes both paths safe and bounded: the text of an
exception is taken with a fallback (``<unprintable ValueError: __str__ raised KeyError>``)
and cut to :data:`MAX_MESSAGE` / :data:`MAX_STACKTRACE` characters *before* it is stored.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import Span
from opentelemetry.trace import Status, StatusCode

from telemetry.shared import EXCEPTION_TRACE_ATTRIBUTE

__all__ = [
    "MAX_MESSAGE",
    "MAX_STACKTRACE",
    "ExceptionTextGuard",
    "defuse_unprintable",
    "harden_exception_recording",
    "safe_exception_text",
]

#: Longer than any scrubbed attribute that leaves the process (8 KiB), so the exporter's
#: own truncation still marks the cut; short enough that a hostile message costs nothing.
MAX_MESSAGE = 16 * 1024
MAX_STACKTRACE = 64 * 1024

_patched = False
#: OpenTelemetry's ``use_span``, as this module found it at import.
_OTEL_USE_SPAN = trace_api.use_span


def safe_exception_text(exc: BaseException, limit: int = MAX_MESSAGE) -> str:
    """``str(exc)`` bounded to ``limit`` characters; never raises."""
    try:
        text = str(exc)
    except Exception as error:  # a hostile or broken __str__
        return f"<unprintable {type(exc).__name__}: __str__ raised {type(error).__name__}>"
    if not isinstance(text, str):  # pragma: no cover - str() always returns str
        return f"<unprintable {type(exc).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}...[truncated, {len(text)} chars]"


def _safe_stacktrace(exc: BaseException) -> str:
    try:
        # traceback survives a raising __str__ and cause/context cycles; its output is
        # bounded by the message (cut below) and the frames, kept from the end.
        text = "".join(traceback.format_exception(exc))
    except Exception:
        return f"<stack trace of {type(exc).__name__} could not be formatted>"
    if len(text) <= MAX_STACKTRACE:
        return text
    return f"[truncated, {len(text)} chars]...{text[-MAX_STACKTRACE:]}"


def _type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    qualname = type(exc).__qualname__
    return f"{module}.{qualname}" if module and module != "builtins" else qualname


def harden_exception_recording() -> None:
    """Patch ``Span.record_exception`` and ``trace.use_span`` (idempotent, process-wide)."""
    global _patched
    if _patched:
        return
    previous_record = Span.record_exception

    def record_exception(
        self: Span,
        exception: BaseException,
        attributes: Any = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        try:
            message = str(exception)
            safe = len(message) <= MAX_MESSAGE
        except Exception:
            safe = False
        if safe:
            with contextlib.suppress(Exception):
                previous_record(self, exception, attributes, timestamp, escaped)
                return
        # Hostile or huge: record the same event, from bounded text that cannot raise.
        event: dict[str, Any] = {
            "exception.type": _type_name(exception),
            "exception.message": safe_exception_text(exception),
            "exception.stacktrace": _safe_stacktrace(exception),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        with contextlib.suppress(Exception):
            self.add_event(name="exception", attributes=event, timestamp=timestamp)

    Span.record_exception = record_exception  # type: ignore[method-assign]

    original_use_span = trace_api.use_span

    def record_escaping(
        span: trace_api.Span, exc: Exception, record_exception: bool, set_status: bool
    ) -> None:
        # Done here, where a failure to describe the exception cannot escape in its place.
        if isinstance(span, trace_api.Span) and span.is_recording():
            with contextlib.suppress(Exception):
                if record_exception:
                    span.record_exception(exc)
                if set_status:
                    text = safe_exception_text(exc, limit=1024)
                    description = f"{type(exc).__name__}: {text}"
                    span.set_status(Status(StatusCode.ERROR, description=description))

    @contextlib.contextmanager
    def use_span_wrapped(
        span: trace_api.Span,
        end_on_exit: bool = False,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Iterator[trace_api.Span]:
        # The original's own recording is turned off and done here.
        with original_use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=False,
            set_status_on_exception=False,
        ):
            try:
                yield span
            except Exception as exc:
                record_escaping(span, exc, record_exception, set_status_on_exception)
                raise

    @contextlib.contextmanager
    def use_span_own(
        span: trace_api.Span,
        end_on_exit: bool = False,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Iterator[trace_api.Span]:
        # OpenTelemetry's use_span, written out (attach, detach, end on exit) with the
        # recording above: wrapping it cost a second generator context manager on every
        # span made current.
        try:
            token = otel_context.attach(trace_api.set_span_in_context(span))
            try:
                yield span
            except Exception as exc:
                record_escaping(span, exc, record_exception, set_status_on_exception)
                raise
            finally:
                otel_context.detach(token)
        finally:
            if end_on_exit:
                span.end()

    # A use_span another library installed before this one is wrapped, so its behaviour
    # stays; OpenTelemetry's own is replaced.
    use_span = use_span_own if original_use_span is _OTEL_USE_SPAN else use_span_wrapped
    trace_api.use_span = use_span  # type: ignore[assignment]
    _patched = True


def defuse_unprintable(exc: BaseException) -> None:
    """Give an exception whose ``__str__`` raises a safe one, in place.

    Layers that describe an escaping exception with an f-string (OpenTelemetry's FastAPI
    exception handler, ``use_span`` of other tracers, logging) would otherwise raise the
    formatting error in its place. The exception is moved to a subclass of its own class
    (``isinstance`` and ``except`` clauses still match, its name and module are the same)
    whose ``__str__``/``__repr__`` fall back to a fixed text. Exceptions whose class
    cannot be reassigned are left as they are."""
    try:
        str(exc)
        return
    except Exception:
        pass
    cls = type(exc)
    text = safe_exception_text(exc)

    def describe(self: BaseException) -> str:
        return text

    safe_cls = type(
        cls.__name__,
        (cls,),
        {
            "__str__": describe,
            "__repr__": describe,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
        },
    )
    with contextlib.suppress(TypeError):
        exc.__class__ = safe_cls


class ExceptionTextGuard:
    """Innermost ASGI layer: an escaping exception leaves it describable (see
    :func:`defuse_unprintable`), so every layer above records the app's own exception."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            defuse_unprintable(exc)
            remember_trace(exc)
            raise


def remember_trace(exc: BaseException) -> None:
    """Tag ``exc`` with the current span's ids, for log lines written after it ended."""
    ctx = trace_api.get_current_span().get_span_context()
    if ctx.is_valid and getattr(exc, EXCEPTION_TRACE_ATTRIBUTE, None) is None:
        ids = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), ctx.trace_flags.sampled)
        with contextlib.suppress(AttributeError, TypeError):
            setattr(exc, EXCEPTION_TRACE_ATTRIBUTE, ids)
