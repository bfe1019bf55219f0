"""The sampling decision, taken once where a request enters OpenTelemetry's ASGI middleware.

OpenTelemetry's ASGI middleware does the same work for every request, sampled or not: it
resolves the route, collects a dozen start attributes, starts a span (which the sampler then
drops), wraps ``send``, and formats duration attributes for metrics that nobody records. On
the production profile 90% of requests pay all of that for a span that is never recorded.

:class:`SamplingGate` sits exactly where that middleware was and asks the sampler first,
with the same inputs it would get (the trace id, the span name, the route, the path, the
parent extracted from the request's headers):

* sampled: the request goes through OpenTelemetry's middleware as before. The trace id the
  decision was taken on is handed to the tracer (:class:`PresetIdGenerator`), so the span
  carries exactly that id, and the route resolved for the decision is reused for the
  span's name and ``http.route`` instead of being matched again;
* not sampled: the request skips the middleware. The context it runs in is the one the
  middleware would have made: the extracted parent and a non-recording span with the same
  trace id, a new span id and the not-sampled flag. So outgoing calls propagate
  ``traceparent`` with ``-00``, logs and Sentry error events carry the trace id, metrics are
  recorded, and the instrumentations see a non-recording parent.

Whenever the middleware would do something observable for an unsampled request the gate
steps aside and lets it run: a non-HTTP scope, suppressed instrumentation, a route the
sampler always drops (excluded routes: the middleware's own URL exclusion decides), a
global response propagator (``traceresponse`` headers), a configured OpenTelemetry meter
provider (its ``http.server.*`` metrics count every request), or a user ``traces_sampler``
(it is given the middleware's full start attributes).
"""

from __future__ import annotations

from contextvars import ContextVar
from time import monotonic
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry.propagate import extract, get_global_textmap
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)

from telemetry.tracing.propagation import DEFERRED_SAMPLING_KEY, header_names_read
from telemetry.tracing.sampling import RouteAwareSampler

__all__ = [
    "PresetIdGenerator",
    "SamplingGate",
    "install_sampling_gate",
    "skip_unsampled_statements",
]

#: The trace id the gate decided a new trace on; the next root span takes it.
_PRESET_TRACE_ID: ContextVar[int | None] = ContextVar("telemetry_preset_trace_id", default=None)
#: Where the gate leaves the span details it resolved, for the middleware to reuse.
_DETAILS_KEY = "telemetry.span_details"
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
#: Distinct (method, path) pairs whose route is remembered (see SamplingGate.span_details).
MAX_KNOWN_PATHS = 1024
#: How stale the process-wide conditions of :meth:`SamplingGate._steps_aside` may be: a
#: meter provider or response propagator set while serving is honoured within this time.
GLOBALS_RECHECK_S = 1.0
_NOT_SAMPLED_RANDOM = TraceFlags(TraceFlags.DEFAULT | TraceFlags.RANDOM_TRACE_ID)


class PresetIdGenerator(RandomIdGenerator):
    """Random ids, except that the next trace id may have been chosen (and decided on)
    already, by the gate, in the current context."""

    def generate_trace_id(self) -> int:
        preset = _PRESET_TRACE_ID.get()
        if preset is not None:
            _PRESET_TRACE_ID.set(None)
            return preset
        return super().generate_trace_id()


class _HeadersGetter(Getter[dict[str, list[str]]]):
    """Reads a ``{lower-case name: [values]}`` dict built once per request (OTel's
    ``asgi_getter`` scans and decodes every header for every key a propagator asks for)."""

    def get(self, carrier: dict[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key.lower())

    def keys(self, carrier: dict[str, list[str]]) -> list[str]:
        return list(carrier)


_GETTER = _HeadersGetter()


def _headers(scope: Any) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in scope.get("headers") or ():
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in headers:
            headers[key].append(text)
        else:
            headers[key] = [text]
    return headers


_NOOP_METER_PROVIDERS = frozenset({"_ProxyMeterProvider", "NoOpMeterProvider"})


def _meter_provider_is_noop() -> bool:
    return type(otel_metrics.get_meter_provider()).__name__ in _NOOP_METER_PROVIDERS


class SamplingGate:
    """In place of OpenTelemetry's ASGI middleware (``otel``): decides, then either calls
    it (sampled) or the app it wraps under a non-recording span (not sampled).

    ``app`` stays the middleware, so code that walks a middleware stack (FastAPI's native
    telemetry looks for OpenTelemetry's middleware) still finds it.
    """

    def __init__(
        self, otel: Any, sampler: RouteAwareSampler, id_generator: PresetIdGenerator
    ) -> None:
        # Here, not at the top: the instrumentation package comes with the fastapi extra.
        from opentelemetry.instrumentation.propagators import get_global_response_propagator
        from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled

        self._http_enabled = is_http_instrumentation_enabled
        self._response_propagator = get_global_response_propagator
        self.app = otel
        self.inner = otel.app
        self.sampler = sampler
        self.ids = id_generator
        details = otel.default_span_details

        def span_details(scope: Any) -> Any:
            # The route resolved for the decision, not matched a second time.
            known = scope.pop(_DETAILS_KEY, None)
            return known if known is not None else details(scope)

        self._details = details
        self._propagator: Any = None
        self._propagation_headers: frozenset[bytes] | None = None
        self._globals_checked_until = -1.0
        self._globals_say_step_aside = True
        self._known: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
        otel.default_span_details = span_details

    def span_details(self, scope: Any) -> tuple[str, dict[str, Any]]:
        """The middleware's span name and route attributes for ``scope``, remembered per
        (method, path) for up to ``MAX_KNOWN_PATHS`` paths: matching a request against every
        route is the larger part of the middleware's own cost. The routes' identity and
        count are part of the key (routes added later are seen), and an app with host-based
        routes is matched every time (the host header takes part). The answer is shared:
        callers copy the attributes before changing them."""
        app = scope.get("app")
        routes = getattr(app, "routes", None)
        key = (
            scope.get("method"),
            scope.get("root_path", ""),
            scope.get("path"),
            id(routes),
            len(routes) if isinstance(routes, list) else -1,
        )
        known = self._known.get(key)
        if known is None:
            known = self._details(scope)
            if len(self._known) < MAX_KNOWN_PATHS and not _host_routed(routes):
                self._known[key] = known
        return known  # shared: copied only where it is handed on (sampled requests)

    def _steps_aside(self, scope: Any) -> bool:
        return (
            scope["type"] != "http"
            or self._process_wide_reason()
            or self.sampler.excluded.matches(scope.get("path"))
            or not self._http_enabled()
        )

    def _process_wide_reason(self) -> bool:
        """Whether something set for the whole process makes the middleware observable
        for unsampled requests. Looked up at most once per ``GLOBALS_RECHECK_S``: reading
        the global meter provider consults ``os.environ`` while none is set, on every call."""
        now = monotonic()
        if now < self._globals_checked_until:
            return self._globals_say_step_aside
        self._globals_say_step_aside = (
            self.sampler.traces_sampler is not None
            or not self._tracer_enabled()
            or not _meter_provider_is_noop()
            or self._response_propagator() is not None
        )
        self._globals_checked_until = now + GLOBALS_RECHECK_S
        return self._globals_say_step_aside

    def _parent_context(self, scope: Any) -> otel_context.Context:
        """The context extracted from the request's headers. A request that carries none of
        the headers the bridge's propagator reads (most requests at the edge) gets the
        current context, which is what extracting would return, without the work."""
        propagator = get_global_textmap()
        if propagator is not self._propagator:
            self._propagator = propagator
            self._propagation_headers = header_names_read(propagator)
        names = self._propagation_headers
        raw = scope.get("headers") or ()
        if names is not None and not any(name.lower() in names for name, _ in raw):
            return otel_context.get_current()
        return extract(_headers(scope), getter=_GETTER)

    def _tracer_enabled(self) -> bool:
        # A tracer disabled by the provider's configurator makes no span at all.
        enabled = getattr(self.app.tracer, "_is_enabled", None)
        return not callable(enabled) or bool(enabled())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._steps_aside(scope):
            await self.app(scope, receive, send)
            return
        name, attributes = self.span_details(scope)
        parent_context = self._parent_context(scope)
        parent = get_current_span(parent_context).get_span_context()
        root = not parent.is_valid
        trace_id = self.ids.generate_trace_id() if root else parent.trace_id
        if self.sampler.samples_request(
            parent_context, parent, trace_id, name, attributes.get("http.route"),
            scope.get("path"), scope.get("method"),
        ):  # fmt: skip
            scope[_DETAILS_KEY] = (name, dict(attributes))
            preset = _PRESET_TRACE_ID.set(trace_id) if root else None
            try:
                await self.app(scope, receive, send)
            finally:
                scope.pop(_DETAILS_KEY, None)
                if preset is not None:
                    _PRESET_TRACE_ID.reset(preset)
            return
        # The span context the SDK gives a dropped span: new span id, the parent's trace
        # state, the not-sampled flag (+ the random-trace-id flag, as the SDK sets it).
        random = self.ids.is_trace_id_random() if root else parent.trace_flags.random_trace_id
        span = NonRecordingSpan(
            SpanContext(
                trace_id,
                self.ids.generate_span_id(),
                is_remote=False,
                trace_flags=_NOT_SAMPLED_RANDOM if random else _NOT_SAMPLED,
                trace_state=parent.trace_state,
            )
        )
        hook = self.app.server_request_hook
        token = otel_context.attach(set_span_in_context(span, parent_context))
        try:
            if callable(hook):
                hook(span, scope)
            await self.inner(scope, receive, send)
        finally:
            otel_context.detach(token)


def _host_routed(routes: Any) -> bool:
    return not isinstance(routes, list) or any(type(r).__name__ == "Host" for r in routes)


def _is_otel_middleware(node: Any) -> bool:
    cls = type(node)
    return cls.__name__ == "OpenTelemetryMiddleware" and cls.__module__.startswith(
        "opentelemetry.instrumentation.asgi"
    )


def install_sampling_gate(app: Any, provider: Any) -> bool:
    """Put a :class:`SamplingGate` in place of OpenTelemetry's middleware in ``app``'s
    stack (rebuilt lazily by Starlette). Only when the provider samples with a
    :class:`RouteAwareSampler` and draws ids from a :class:`PresetIdGenerator`."""
    sampler, ids = getattr(provider, "sampler", None), getattr(provider, "id_generator", None)
    if not isinstance(sampler, RouteAwareSampler) or not isinstance(ids, PresetIdGenerator):
        return False
    build = app.build_middleware_stack

    def build_middleware_stack() -> Any:
        stack = build()
        parent, node = None, stack
        for _ in range(64):  # a bounded walk down the .app chain
            if node is None:
                break
            if _is_otel_middleware(node):
                gate = SamplingGate(node, sampler, ids)
                if parent is None:
                    return gate
                parent.app = gate
                break
            parent, node = node, getattr(node, "app", None)
        return stack

    app.build_middleware_stack = build_middleware_stack
    app.middleware_stack = None
    return True


def _dropped_anyway(tracer: Any) -> bool:
    """Whether a span ``tracer`` started now would be dropped by the bridge's sampler
    because it follows an unsampled local parent (no remote parent, no deferred decision)."""
    span_context = get_current_span().get_span_context()
    if (
        span_context.is_valid
        and not span_context.trace_flags.sampled
        and not span_context.is_remote
    ):
        sampler = getattr(tracer, "sampler", None)
        return (
            isinstance(sampler, RouteAwareSampler)
            and sampler.follow_parent
            and not otel_context.get_value(DEFERRED_SAMPLING_KEY)
        )
    return False


def _quiet_when_unsampled(before: Any) -> Any:
    """OpenTelemetry's SQLAlchemy ``before_cursor_execute`` listener, made to return at
    once under a span that is not sampled: it would read the engine URL, name the
    operation and start a span the sampler drops anyway (it follows a local parent). Under
    a sampled span, no span, a remote parent or a deferred decision, it runs as it is."""

    def _before_cur_exec(
        self: Any, conn: Any, cursor: Any, statement: Any, params: Any, context: Any,
        executemany: Any,
    ) -> Any:  # fmt: skip
        if _dropped_anyway(self.tracer):
            return statement, params
        return before(self, conn, cursor, statement, params, context, executemany)

    _before_cur_exec.__wrapped__ = before  # type: ignore[attr-defined]
    _before_cur_exec.__name__ = "_before_cur_exec"
    return _before_cur_exec


def _quiet_connect_when_unsampled(make_wrapper: Any) -> Any:
    """OpenTelemetry's ``Engine.connect`` wrapper factory, made so that the wrapper calls
    ``connect`` directly under an unsampled span: it would read the semantic-convention
    mode twice and start a ``connect`` span the sampler drops anyway."""

    def _wrap_connect(tracer: Any) -> Any:
        traced = make_wrapper(tracer)

        def _wrap_connect_internal(func: Any, module: Any, args: Any, kwargs: Any) -> Any:
            if _dropped_anyway(tracer):
                return func(*args, **kwargs)
            return traced(func, module, args, kwargs)

        return _wrap_connect_internal

    _wrap_connect.__wrapped__ = make_wrapper  # type: ignore[attr-defined]
    return _wrap_connect


def skip_unsampled_statements() -> bool:
    """Install :func:`_quiet_when_unsampled` on OpenTelemetry's SQLAlchemy ``EngineTracer``
    and :func:`_quiet_connect_when_unsampled` on its ``Engine.connect`` wrapper (before the
    instrumentor runs: each tracer binds its listener, and ``instrument`` makes the connect
    wrapper, when it runs). Idempotent; False when the instrumentation is not installed."""
    try:
        import opentelemetry.instrumentation.sqlalchemy as sqlalchemy_instrumentation
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    except ImportError:
        return False
    current = EngineTracer._before_cur_exec
    if getattr(current, "__wrapped__", None) is None:
        EngineTracer._before_cur_exec = _quiet_when_unsampled(current)  # type: ignore[method-assign]
    make_connect = getattr(sqlalchemy_instrumentation, "_wrap_connect", None)
    if callable(make_connect) and getattr(make_connect, "__wrapped__", None) is None:
        sqlalchemy_instrumentation._wrap_connect = _quiet_connect_when_unsampled(make_connect)
    return True
