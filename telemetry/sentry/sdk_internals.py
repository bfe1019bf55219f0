"""Every reach into sentry-sdk's private attributes, in one place.

sentry-sdk offers no public hook for these; if a release renames one,
``tests/sentry/test_sdk_internals.py`` fails here instead of the Sentry side degrading
silently (requests sharing a scope, spans missing from transactions, events uncounted).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor
from sentry_sdk.session import Session
from sentry_sdk.transport import HttpTransport, Transport
from sentry_sdk.utils import capture_internal_exceptions

from telemetry.shared import FailureLog

__all__ = [
    "RequestSession",
    "clear_transaction_name",
    "counting_transport_class",
    "end_request_session",
    "envelope_processor_class",
    "install_task_capture",
    "mark_dedupe_drops",
    "recording_transport_class",
    "start_request_session",
]


def clear_transaction_name(scope: Any) -> None:
    """Forget a transaction name the scope inherited: a fork keeps the name a
    ``start_transaction`` left on the scope it came from, and a request's events must be
    named after the request. sentry-sdk has no public way to unset it."""
    scope._transaction = None
    scope._transaction_info = {}


#: The current minute as sentry-sdk buckets sessions by it (``Session.truncated_started``):
#: (minutes since the epoch, that minute as an aware UTC datetime), made once a minute.
_minute: tuple[int, datetime] = (-1, datetime.min.replace(tzinfo=UTC))


class RequestSession(Session):
    """A request-mode session for the price of a few attributes.

    sentry-sdk's ``Session`` makes a ``uuid4``, reads the clock into datetimes and runs
    ``update()`` with a dozen arguments, at start and again at close (``track_session``
    ~33 us per request on the benchmark machine, ~10 us with this one), though request-mode
    sessions are only ever aggregated
    (``SessionFlusher.add_aggregate_session``: its status, its error count, its release and
    environment, its start minute). This one keeps those; it is still a ``Session`` that
    sentry-sdk's own code accounts for unchanged: ``_update_session_from_event`` marks it
    errored or crashed through ``update()``, ``Scope.set_user`` updates it, and
    ``Client.capture_session`` aggregates it with sentry-sdk's own code (the same buckets
    and counts). Whatever the aggregates never read (``sid``, ``started``, ``timestamp``)
    is made only if something asks for it.
    """

    session_mode = "request"
    did: str | None = None
    duration: float | None = None
    ip_address: str | None = None
    user_agent: str | None = None

    def __init__(
        self, release: str | None, environment: str | None, user: Any = None
    ) -> None:  # no super().__init__(): it is what costs
        global _minute
        now = time.time()
        minute = int(now // 60)
        if minute != _minute[0]:
            _minute = (minute, datetime.fromtimestamp(minute * 60, UTC))
        self._started_at = now
        self._started_minute = _minute[1]
        self.release = release
        self.environment = environment
        self.status = "ok"
        self.errors = 0
        if user:
            self.update(user=user)  # did and ip_address, as Session() takes them

    def __getattr__(self, name: str) -> Any:
        # Only for attributes never set: made on first use, as Session() would have them.
        if name == "sid":
            self.sid = uuid.uuid4()
            return self.sid
        if name in ("started", "timestamp"):
            return datetime.fromtimestamp(self._started_at, UTC)
        raise AttributeError(name)

    @property
    def truncated_started(self) -> datetime:
        started = self.__dict__.get("started")  # set only if an update() gave one
        return self._started_minute if started is None else super().truncated_started

    def close(self, status: Any = None) -> None:
        # Session.close() without update()'s clock read: only the status matters here.
        if status is None and self.status == "ok":
            status = "exited"
        if status is not None:
            self.status = status


def start_request_session(scope: Any, client: Any) -> bool:
    """``scope.start_session(session_mode="request")`` with a :class:`RequestSession`, if
    session tracking is on for ``scope`` (as sentry-sdk's ``track_session`` decides);
    returns whether it is, i.e. whether :func:`end_request_session` must follow."""
    track = scope._force_auto_session_tracking
    options = client.options
    if track is None:
        track = options.get("auto_session_tracking", False)
    if not track:
        return False
    if scope._session is not None:
        scope.end_session()  # as start_session() does: a session left on a fork ends
    scope._session = RequestSession(options.get("release"), options.get("environment"), scope._user)
    return True


def end_request_session(scope: Any) -> None:
    """``scope.end_session()``: the session closed and handed to the current client."""
    scope.end_session()


def envelope_processor_class(
    starts_transaction: Callable[[Any], bool],
    decorate: Callable[[Any, Any], None],
) -> type[SpanProcessor]:
    """sentry-sdk's envelope span processor, where ``starts_transaction(otel_span)`` says
    which parentless/remote-parent spans become transactions (their descendants join them)
    and ``decorate(sentry_span, otel_span)`` runs after sentry-sdk copied a span's data.

    Imported here, on first use: sentry-sdk's OTel processor module is deprecated and costs
    import time that only envelope mode should pay.
    """
    import sentry_sdk
    from opentelemetry.trace import format_span_id
    from sentry_sdk.integrations.opentelemetry.span_processor import (
        SentrySpanProcessor as SdkSentrySpanProcessor,
    )

    class SentrySpanProcessor(SdkSentrySpanProcessor):
        def __new__(cls) -> Any:
            # sentry-sdk's processor is a singleton kept in ``cls.instance``: a subclass would
            # inherit the base's instance (without these overrides) once anything made one.
            if "instance" not in cls.__dict__:
                setattr(cls, "instance", object.__new__(cls))  # noqa: B010
            return cls.__dict__["instance"]

        def on_start(self, otel_span: Any, parent_context: Any = None) -> None:
            parent = otel_span.parent
            if parent is None or parent.is_remote:
                if not starts_transaction(otel_span):
                    return
            elif format_span_id(parent.span_id) not in self.otel_span_map:
                return  # its transaction was never started: not ours
            super().on_start(otel_span, parent_context)

        def _update_span_with_otel_data(self, sentry_span: Any, otel_span: Any) -> None:
            super()._update_span_with_otel_data(sentry_span, otel_span)
            decorate(sentry_span, otel_span)

        def _update_transaction_with_otel_data(self, sentry_span: Any, otel_span: Any) -> None:
            super()._update_transaction_with_otel_data(sentry_span, otel_span)
            decorate(sentry_span, otel_span)

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            sentry_sdk.get_client().flush(timeout=timeout_millis / 1000)
            return True

    return SentrySpanProcessor


def counting_transport_class(
    on_sent: Callable[[str, int], None],
    on_lost: Callable[[str, str, int], None],
    base: type[Transport] = HttpTransport,
    deliberate: Callable[[], bool] = lambda: False,
    health: FailureLog | None = None,
    around_send: Callable[[], AbstractContextManager[object]] | None = None,
) -> type[Transport]:
    """A transport class reporting each envelope item the server accepted
    (``on_sent(kind, count)``) and each one sentry-sdk gave up on
    (``on_lost(kind, reason, count)``). A drop by a processor or ``before_send`` that
    ``deliberate()`` says was a filter (a duplicate, an excluded route) is no loss.
    ``health`` hears of each request that failed (network error, error status) and each
    one the server accepted, for its once-per-failure log line; ``around_send()`` is
    entered around each envelope's request, on the thread that sends it."""

    class CountingTransport(base):  # type: ignore[valid-type,misc]
        # Transactions (and profile chunks) get a queue of their own: at load they would
        # fill sentry-sdk's one queue and error events would be dropped behind them
        # ("queue_overflow"). Errors, sessions and client reports keep the SDK's queue.
        _BULK_TYPES = frozenset({"transaction", "profile", "profile_chunk", "span"})

        def __init__(self, options: Any = None) -> None:
            super().__init__(options)
            if hasattr(self, "_worker") and options is not None:
                from sentry_sdk.worker import BackgroundWorker

                self._bulk_worker: Any = BackgroundWorker(
                    queue_size=options.get("transport_queue_size") or 100
                )
            else:
                self._bulk_worker = None

        def capture_envelope(self, envelope: Any) -> None:
            bulk = self._bulk_worker
            if bulk is None or not any(i.type in self._BULK_TYPES for i in envelope.items):
                super().capture_envelope(envelope)
                return

            def send() -> None:
                with capture_internal_exceptions():
                    self._send_envelope(envelope)

            if not bulk.submit(send):
                self.on_dropped_event("full_queue")
                for item in envelope.items:
                    self.record_lost_event("queue_overflow", item=item)

        def _send_envelope(self, envelope: Any) -> Any:
            if around_send is None:
                return super()._send_envelope(envelope)
            with around_send():
                return super()._send_envelope(envelope)

        def flush(self, timeout: float, callback: Any = None) -> None:
            # One deadline for both queues: errors first, then what time is left.
            deadline = time.monotonic() + timeout
            super().flush(timeout, callback)
            if self._bulk_worker is not None:
                left = deadline - time.monotonic()
                if left > 0:
                    self._bulk_worker.flush(left, callback)

        def kill(self) -> Any:
            if self._bulk_worker is not None:
                self._bulk_worker.kill()
            return super().kill()

        def _handle_response(self, response: Any, envelope: Any) -> None:
            if 200 <= response.status < 300:
                if health is not None:
                    health.succeeded()
                if envelope is not None:
                    for item in envelope.items:
                        on_sent(item.data_category or item.type or "unknown", 1)
            super()._handle_response(response=response, envelope=envelope)

        def record_lost_event(
            self,
            reason: str,
            data_category: Any = None,
            item: Any = None,
            *,
            quantity: int = 1,
        ) -> None:
            kind = (item.data_category if item is not None else data_category) or "unknown"
            if reason == "network_error" and health is not None:
                health.failed()  # sentry-sdk's reason for refused, unreachable and 5xx alike
            if not (reason in ("event_processor", "before_send") and deliberate()):
                on_lost(str(kind), reason, quantity)
            super().record_lost_event(reason, data_category, item, quantity=quantity)

    return CountingTransport


def mark_dedupe_drops(mark: Callable[[], None]) -> None:
    """Make sentry-sdk's DedupeIntegration say when it drops a duplicate (``mark()``), so
    the drop is not counted as a lost event. Its processor is private: found by name among
    the global event processors and wrapped once; absent in another version, nothing
    changes (a duplicate is then counted, as before)."""
    from sentry_sdk import scope as sentry_scope

    processors = getattr(sentry_scope, "global_event_processors", None)
    if not isinstance(processors, list):
        return
    for index, processor in enumerate(processors):
        name = getattr(processor, "__qualname__", "")
        if not name.startswith("DedupeIntegration.") or getattr(processor, "_telemetry", False):
            continue

        def marking(event: Any, hint: Any, _inner: Any = processor) -> Any:
            result = _inner(event, hint)
            if result is None and event is not None:
                mark()
            return result

        marking._telemetry = True  # type: ignore[attr-defined]
        processors[index] = marking


def recording_transport_class(timeout_s: float) -> type[Transport]:
    """An HTTP transport that remembers each response status (``statuses``), network error
    (``errors``) and lost item (``lost``), so the outcome of ``telemetry doctor``'s test
    event is known instead of guessed from a silent flush."""

    class RecordingTransport(HttpTransport):
        TIMEOUT = math.ceil(timeout_s)  # urllib3's total timeout of one request

        def __init__(self, options: dict[str, Any]) -> None:
            super().__init__(options)
            self.statuses: list[int] = []
            self.errors: list[BaseException] = []
            self.lost: list[str] = []

        def _request(self, method: str, endpoint_type: Any, body: Any, headers: Any) -> Any:
            try:
                response = super()._request(method, endpoint_type, body, headers)
            except Exception as error:
                self.errors.append(error)
                raise
            self.statuses.append(response.status)
            return response

        def record_lost_event(
            self, reason: str, data_category: Any = None, item: Any = None, *, quantity: int = 1
        ) -> None:
            self.lost.append(reason)
            super().record_lost_event(reason, data_category, item, quantity=quantity)

    return RecordingTransport


#: Coroutines an ASGI server runs one task per request for: uvicorn's (h11 and httptools).
#: The request's own Sentry scope comes from the bridge's outermost middleware, and the
#: server catches everything the app raises, so sentry-sdk's task wrapper (a second scope
#: fork, a capture that never fires, a task rename: ~40 us per request) adds nothing there.
SERVER_REQUEST_COROUTINES = frozenset({"RequestResponseCycle.run_asgi"})


def install_task_capture(enable: Callable[[], None]) -> None:
    """``enable`` (sentry-sdk's ``enable_asyncio_integration``) on the running loop, with
    the server's per-request tasks created as plain tasks.

    Only when sentry-sdk's factory sits directly on asyncio's default (the loop had no
    factory of its own): a plain ``Task`` is then exactly what it would have made
    underneath. The wrapper keeps sentry-sdk's ``_is_sentry_task_factory`` mark so that a
    later ``enable_asyncio_integration`` on this loop does not wrap it a second time."""
    enable()
    loop = asyncio.get_running_loop()
    sentry_factory = loop.get_task_factory()
    if sentry_factory is None or getattr(sentry_factory, "_telemetry_server_tasks", False):
        return
    if not getattr(sentry_factory, "_is_sentry_task_factory", False):
        return
    if _wrapped_task_factory(sentry_factory) != (True, None):
        return

    def task_factory(
        loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        code = getattr(coro, "cr_code", None)
        if code is not None and code.co_qualname in SERVER_REQUEST_COROUTINES:
            return asyncio.Task(coro, loop=loop, **kwargs)
        return sentry_factory(loop, coro, **kwargs)

    task_factory._is_sentry_task_factory = True  # type: ignore[attr-defined]
    task_factory._telemetry_server_tasks = True  # type: ignore[attr-defined]
    task_factory.__wrapped__ = sentry_factory  # type: ignore[attr-defined]
    loop.set_task_factory(task_factory)


def _wrapped_task_factory(sentry_factory: Any) -> tuple[bool, Any]:
    """(whether it is known, the factory) sentry-sdk's task factory delegates to: its
    ``patch_asyncio`` keeps the loop's previous factory in the closure, and says nowhere
    else."""
    code = getattr(sentry_factory, "__code__", None)
    cells = getattr(sentry_factory, "__closure__", None)
    if code is None or not cells or "orig_task_factory" not in code.co_freevars:
        return False, None
    try:
        return True, cells[code.co_freevars.index("orig_task_factory")].cell_contents
    except ValueError:  # an empty cell
        return False, None
