"""What happens to an error event before it leaves the process: the project's filters, the
link to the span that failed, and the OTel trace context of events captured outside
sentry-sdk's tracing."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from opentelemetry.sdk.trace import Span
from opentelemetry.trace import INVALID_SPAN_ID, format_span_id, format_trace_id
from opentelemetry.trace import get_current_span as otel_current_span

from telemetry.settings import BeforeSend
from telemetry.shared import REPORTED_EVENT_ATTRIBUTE

__all__ = [
    "IGNORED_EXCEPTIONS",
    "build_before_send",
    "mark_suppressed",
    "otel_trace_context",
    "remember_failing_spans",
    "take_suppressed",
    "was_reported",
]

IGNORED_EXCEPTIONS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit)
EventHook = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]


def _is_ignored(exc: BaseException) -> bool:
    if isinstance(exc, IGNORED_EXCEPTIONS):
        return True
    qualified = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if qualified.startswith("httpx.") and qualified.endswith("HTTPStatusError"):
        return True
    status = getattr(exc, "status_code", None)
    # Client errors (HTTPException 4xx) are the caller's fault, not an application error.
    return type(exc).__name__ == "HTTPException" and isinstance(status, int) and 400 <= status < 500


def build_before_send(
    is_excluded_path: Callable[[str], bool],
    scrub: EventHook | None,
    user_hook: BeforeSend | None,
) -> EventHook:
    """Project filters, then the user's hook, then scrubbing: whatever a user hook adds is
    still scrubbed before it leaves the process."""

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        exc_info = hint.get("exc_info") if hint else None
        exc = exc_info[1] if exc_info else None
        if exc is not None and (_is_ignored(exc) or was_reported(exc)):
            # Reported already: a failed task is captured by the asyncio integration and
            # then logged by asyncio's "Task exception was never retrieved", in another
            # context where sentry-sdk's own dedupe does not see the first capture.
            # A filter, not a loss: the drop counter must not count it.
            mark_suppressed()
            return None
        request = event.get("request") or {}
        url = request.get("url") if isinstance(request, dict) else None
        if isinstance(url, str) and is_excluded_path(_path_of(url)):
            mark_suppressed()
            return None
        _attach_failing_span(event, exc_info)
        _complete_trace_context(event)
        result: dict[str, Any] | None = event
        if user_hook is not None:
            result = user_hook(event, hint)
            if result is None:
                return None
        if exc is not None:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, REPORTED_EVENT_ATTRIBUTE, str(event.get("event_id") or True))
        return scrub(result, hint) if scrub is not None else result  # type: ignore[arg-type]

    return before_send


def was_reported(exc: BaseException) -> bool:
    """Whether an event for this exception has already left the process."""
    return bool(getattr(exc, REPORTED_EVENT_ATTRIBUTE, False))


#: Set when an event is filtered on purpose (a duplicate, an excluded route), read by the
#: transport's lost-event hook that sentry-sdk calls right after, in the same thread.
_suppressed: ContextVar[bool] = ContextVar("telemetry_event_suppressed", default=False)


def mark_suppressed() -> None:
    """The event being processed is dropped on purpose: not a lost event."""
    _suppressed.set(True)


def take_suppressed() -> bool:
    """Whether the drop being reported was deliberate (and forget it)."""
    if _suppressed.get():
        _suppressed.set(False)
        return True
    return False


def _path_of(url: str) -> str:
    without_scheme = url.split("://", 1)[-1]
    slash = without_scheme.find("/")
    return "/" if slash < 0 else without_scheme[slash:].split("?", 1)[0]


#: Set on an exception by the innermost span it escaped: the span that failed.
FAILING_SPAN_ATTRIBUTE = "__telemetry_failing_span__"


def _attach_failing_span(event: dict[str, Any], exc_info: Any) -> None:
    """Point the event at the span the exception escaped from, not the request's span."""
    exc = exc_info[1] if exc_info else None
    ids = getattr(exc, FAILING_SPAN_ATTRIBUTE, None)
    trace_context = event.get("contexts", {}).get("trace")
    if not ids or not isinstance(trace_context, dict):
        return
    trace_id, span_id, parent_span_id = ids
    if trace_context.get("trace_id") == trace_id and trace_context.get("span_id") != span_id:
        trace_context["span_id"] = span_id
        if parent_span_id:
            trace_context["parent_span_id"] = parent_span_id


def _complete_trace_context(event: dict[str, Any]) -> None:
    """What sentry-sdk's trace context of an event says and one built from the OTel span's
    ids (``otlp`` mode) lacks: the origin of the span and the capturing thread (events
    are built synchronously in the thread that captures them)."""
    trace_context = event.get("contexts", {}).get("trace")
    if not isinstance(trace_context, dict):
        return
    trace_context.setdefault("origin", "auto.otel")
    data = trace_context.setdefault("data", {})
    if isinstance(data, dict) and "thread.id" not in data:
        thread = threading.current_thread()
        data["thread.id"] = str(thread.ident)
        data["thread.name"] = thread.name


_record_exception_patched = False


def remember_failing_spans() -> None:
    """Tag each exception with the innermost recording span it escaped (idempotent)."""
    global _record_exception_patched
    if _record_exception_patched:
        return
    original = Span.record_exception

    def record_exception(self: Span, exception: BaseException, *args: Any, **kwargs: Any) -> None:
        if getattr(exception, FAILING_SPAN_ATTRIBUTE, None) is None:
            ctx = self.get_span_context()
            parent = self.parent
            # Exceptions with __slots__ cannot take the tag; they keep the request's span.
            with contextlib.suppress(AttributeError, TypeError):
                setattr(
                    exception,
                    FAILING_SPAN_ATTRIBUTE,
                    (
                        format_trace_id(ctx.trace_id),
                        format_span_id(ctx.span_id),
                        format_span_id(parent.span_id) if parent is not None else None,
                    ),
                )
        original(self, exception, *args, **kwargs)

    Span.record_exception = record_exception  # type: ignore[method-assign]
    _record_exception_patched = True


def otel_trace_context() -> tuple[str, str] | None:
    """The active OTel span's ids, for events captured outside sentry-sdk's tracing."""
    ctx = otel_current_span().get_span_context()
    if not ctx.is_valid or ctx.span_id == INVALID_SPAN_ID:
        return None
    return format_trace_id(ctx.trace_id), format_span_id(ctx.span_id)
