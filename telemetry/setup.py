"""``setup_telemetry``: the composition root. It reads like the architecture:

settings -> profile
scrubbing policy ─────────────┬──────────────┬───────────────┐
logs (trace ids, scrubbed)    │              │               │
Sentry errors (sentry-sdk) <──┘              │               │
sampler -> TracerProvider -> Jaeger arm <────┘ (scrubbed)    │
                          -> Sentry arm (otlp | envelope) <──┘
propagator (W3C + sentry-trace + merged baggage)
instrumentations (FastAPI, SQLAlchemy, Redis, HTTPX, asyncio, OpenAI, Anthropic)
/metrics (RED, exemplars of sampled spans, pipeline health, GenAI tokens and cost)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import sentry_sdk
from opentelemetry import trace
from opentelemetry.propagate import set_global_textmap
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from telemetry import api
from telemetry.dsn import parse_dsn
from telemetry.genai import setup_genai
from telemetry.logs import install_logging, log_lifecycle
from telemetry.metrics import (
    UNMATCHED,
    RouteResolver,
    TelemetryMetrics,
    record_breadcrumbs,
    stop_breadcrumbs,
)
from telemetry.profile import Profile, adopt_sentry_client, resolve_profile
from telemetry.scrubbing import RouteSecretsMiddleware, ScrubbingPolicy
from telemetry.sentry import (
    EventScrubber,
    RequestContextMiddleware,
    RequestScopeMiddleware,
    SentryBreadcrumbs,
    build_before_send,
    counting_transport,
    enable_task_capture,
    envelope_span_processor,
    existing_sentry_options,
    init_sentry,
    profiler_span_attributes,
    sentry_otlp_target,
)
from telemetry.settings import (
    SentryTracesMode,
    TelemetryConfigError,
    TelemetrySettings,
    load_settings,
)
from telemetry.shared import NullCounters, OTLPHttpTarget
from telemetry.tracing import (
    BoundedBatchSpanProcessor,
    DynamicSamplingContext,
    ExceptionTextGuard,
    FanOutExporter,
    Instrumented,
    RouteAwareSampler,
    RouteOf,
    RoutePatterns,
    ScrubbingSpanExporter,
    ServerSpanRoute,
    SpanAttributeSetter,
    SpanContextAttributes,
    build_propagator,
    build_tracer_provider,
    derived_attributes,
    harden_exception_recording,
    install_sampling_gate,
    instrument_fastapi,
    instrument_libraries,
    jaeger_exporter,
    native_telemetry_supported,
    scrub_span,
    shutdown_within,
    sink_processor,
    skip_unsampled_statements,
    use_native_telemetry,
)

__all__ = ["TelemetryHandle", "setup_telemetry"]

logger = logging.getLogger("telemetry")
_lock = threading.Lock()
_active: TelemetryHandle | None = None
#: Providers this library built: the global provider can be set only once per process, so
#: after a shutdown it is still the old one, which is not an app's provider to join.
_own_providers: weakref.WeakSet[TracerProvider] = weakref.WeakSet()

#: A placeholder DSN for the file transport: sentry-sdk needs one to be active.
_FILE_SINK_DSN = "http://local@localhost/0"


@dataclass
class TelemetryHandle:
    """What ``setup_telemetry`` built; ``shutdown()`` flushes and undoes it."""

    settings: TelemetrySettings
    profile: Profile
    tracer_provider: TracerProvider
    metrics: TelemetryMetrics | None
    sentry_enabled: bool
    sentry_traces: SentryTracesMode
    instrumented: Instrumented
    apps: list[Any] = field(default_factory=list)
    #: False when the bridge joined the app's own global ``TracerProvider``: shutdown then
    #: stops only the bridge's processors (``span_processors``), not the app's provider.
    owns_provider: bool = True
    span_processors: list[SpanProcessor] = field(default_factory=list)
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _shut_down: bool = False

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down

    def force_flush(self, timeout_s: float | None = None) -> bool:
        timeout = self.settings.shutdown_timeout_seconds if timeout_s is None else timeout_s
        spans = self.tracer_provider.force_flush(int(timeout * 1000))
        if self.sentry_enabled:
            sentry_sdk.flush(timeout=timeout)
        return spans

    def shutdown(self, timeout_s: float | None = None) -> None:
        """Flush what is queued and stop, within a bounded time even with a sink down."""
        global _active
        with _lock:
            if self._shut_down:
                return
            self._shut_down = True
            if _active is self:
                _active = None
        timeout = self.settings.shutdown_timeout_seconds if timeout_s is None else timeout_s
        # One deadline for the whole shutdown: each step gets what the previous ones left,
        # so black-holed sinks cost ``timeout`` in total, not ``timeout`` per step.
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        # Spans first: in envelope mode the Sentry arm hands transactions to sentry-sdk.
        if self.owns_provider:
            shutdown_within(self.tracer_provider.shutdown, left(), "spans")
        else:
            for processor in self.span_processors:
                shutdown_within(processor.shutdown, left(), "spans")
        if self.sentry_enabled:
            client = sentry_sdk.get_client()
            sentry_timeout = left()

            def close_sentry() -> None:
                from sentry_sdk.profiler import stop_profiler

                stop_profiler()  # sends the profile chunk still in its buffer
                client.close(timeout=sentry_timeout)

            shutdown_within(close_sentry, sentry_timeout, "sentry")
        self.instrumented.uninstrument()
        api.bind_tracer(None)
        # Logged before the undo steps take the log handler away.
        log_lifecycle("telemetry_shutdown", service=self.settings.service_name)
        for step in reversed(self._undo):
            step()

    def instrument_app(self, app: Any) -> None:
        """Instrument one more FastAPI app with the pipeline already built (idempotent)."""
        if any(existing is app for existing in self.apps):
            return
        excluded = RoutePatterns(self.settings.excluded_routes)
        from starlette.middleware import Middleware

        native = self.settings.fastapi_instrumentation == "native"
        if native and native_telemetry_supported(app):
            # FastAPI's own server span (and operation spans) on the bridge's provider.
            use_native_telemetry(app, self.tracer_provider, is_excluded=excluded.matches)
        else:
            if native and _is_fastapi(app):
                raise TelemetryConfigError(
                    "TELEMETRY_FASTAPI_INSTRUMENTATION=native needs FastAPI >= 0.142 (its "
                    "native telemetry); upgrade FastAPI or use contrib"
                )
            # Plain Starlette apps have no native telemetry: contrib instruments them.
            instrument_fastapi(
                app, self.tracer_provider, excluded_urls=excluded.as_url_regexes()
            )
            # Sampling decided once, before OTel's middleware: unsampled requests skip its
            # work (contrib only; FastAPI's native path decides itself).
            install_sampling_gate(app, self.tracer_provider)
        # One server span per request, mounted FastAPI apps included, whose http.route is
        # the metrics' route label.
        app.user_middleware.append(
            Middleware(
                ServerSpanRoute,
                route_of=_route_of(self.metrics),
                quiet_mounted_apps=not native or not native_telemetry_supported(app),
            )
        )
        # Innermost: an exception whose __str__ raises is made describable before any
        # layer (OTel's exception handler, Sentry, logging) formats it.
        app.user_middleware.append(Middleware(ExceptionTextGuard))
        if self.sentry_enabled:
            # Innermost, in the route's own task: an error is captured with what the route
            # set (breadcrumbs, tags), as a task spawned by a middleware (BaseHTTPMiddleware)
            # works on a fork of the request's scope. Outermost of the app's middleware:
            # errors raised by a middleware itself. One event either way.
            app.user_middleware.append(Middleware(RequestContextMiddleware))
            app.add_middleware(RequestContextMiddleware)
            _wrap_outermost(
                app,
                lambda inner: RequestScopeMiddleware(
                    inner,
                    is_excluded=excluded.matches,
                    body_limit=self.settings.max_request_body_bytes,
                ),
            )
        if self.metrics is not None:
            self.metrics.install(app)
        # Outermost of all: the scrubbers read the request's sensitive route parameters
        # (``/reset-password/{token}``) from it, uvicorn's access line included.
        _wrap_outermost(app, RouteSecretsMiddleware)
        _chain_lifespan(app, self)
        self.apps.append(app)


def setup_telemetry(
    app: Any = None,
    settings: TelemetrySettings | None = None,
    *,
    engines: Sequence[Any] = (),
) -> TelemetryHandle:
    """Wire Sentry, OpenTelemetry (Jaeger), Prometheus and logs for one service.

    Calling it again returns the same handle (and instruments a new ``app`` if given);
    nothing is instrumented twice. ``engines`` are SQLAlchemy engines created before
    this call (engines created after it are traced automatically).
    """
    global _active
    with _lock:
        if _active is not None:
            handle = _active
        else:
            handle = _build(settings if settings is not None else load_settings(), engines)
            _active = handle
    if app is not None:
        handle.instrument_app(app)
    return handle


def _build(settings: TelemetrySettings, engines: Sequence[Any]) -> TelemetryHandle:
    # An app's own sentry_sdk.init() client is adopted (its options kept, the bridge's
    # added), never silently replaced; conflicting settings stop here with an error.
    app_sentry = existing_sentry_options()
    if app_sentry is not None:
        settings = adopt_sentry_client(settings, app_sentry)
    profile = resolve_profile(settings)
    policy = ScrubbingPolicy.from_lists(
        settings.scrub_fields,
        settings.scrub_patterns,
        keep_user_email=not settings.scrub_user_email,
    )
    undo: list[Callable[[], None]] = []

    logging_handle = install_logging(
        service=settings.service_name,
        environment=settings.environment.value,
        log_format=settings.log_format,
        level=settings.log_level,
        policy=policy,
    )
    undo.append(logging_handle.uninstall)

    metrics: TelemetryMetrics | None = None
    if settings.metrics_enabled:
        metrics = TelemetryMetrics(
            settings.service_name,
            settings.service_version or "0.0.0",
            settings.environment.value,
            release=settings.release,
            apdex_threshold_s=settings.apdex_threshold_seconds,
            path=settings.metrics_path,
            exemplars_for=profile.exemplars_for,
        )
        undo.append(metrics.close)
    counters: Any = metrics.pipeline if metrics is not None else NullCounters()

    def scrubbed(exporter: SpanExporter) -> SpanExporter:
        return ScrubbingSpanExporter(exporter, policy)

    sentry_mode = profile.sentry_traces
    if profile.sentry_enabled:
        _start_sentry(settings, profile, policy, counters, app_sentry)

    processors: list[SpanProcessor] = []
    if not profile.tracing_enabled:
        endpoint = None
        sentry_mode = SentryTracesMode.OFF
    else:
        endpoint = settings.jaeger_traces_endpoint
    if profile.tracing_enabled:
        processors.append(
            SpanContextAttributes(_segment_attributes(settings) if profile.sentry_enabled else {})
        )
    if profile.link_profiles and profile.tracing_enabled:
        processors.append(SpanAttributeSetter(profiler_span_attributes))
    jaeger_sink = profile.span_sink
    http_targets: list[OTLPHttpTarget] = []
    if endpoint is not None and settings.otlp_protocol == "http/protobuf":
        http_targets.append(
            OTLPHttpTarget(
                jaeger_sink,
                endpoint,
                settings.otlp_header_map,
                verify=str(settings.otlp_certificate) if settings.otlp_certificate else True,
                client_cert=(
                    (str(settings.otlp_client_certificate), str(settings.otlp_client_key))
                    if settings.otlp_client_certificate and settings.otlp_client_key
                    else None
                ),
            )
        )
    elif endpoint is not None:
        grpc = jaeger_exporter(settings)
        assert grpc is not None
        processors.append(sink_processor(jaeger_sink, grpc, settings, counters, scrubbed)[0])
    if sentry_mode is SentryTracesMode.OTLP:
        http_targets.append(sentry_otlp_target(settings))
    if http_targets:
        fanout = FanOutExporter(
            http_targets,
            counters,
            scrub=partial(scrub_span, policy),
            max_queued_spans=settings.span_queue_size,
            timeout_s=settings.export_timeout_seconds,
            compression=settings.otlp_compression,
        )
        processors.append(
            BoundedBatchSpanProcessor(
                fanout.sinks,
                fanout,
                counters,
                max_queue_size=settings.span_queue_size,
                export_timeout_millis=settings.export_timeout_seconds * 1000,
            )
        )
    if settings.file_sink_dir is not None and profile.tracing_enabled:
        from telemetry.file_sinks import OTLPJsonFileSpanExporter

        file_exporter = OTLPJsonFileSpanExporter(settings.file_sink_dir / "spans.otlp.jsonl")
        processors.append(sink_processor("file", file_exporter, settings, counters, scrubbed)[0])
    if sentry_mode is SentryTracesMode.ENVELOPE:
        processors.append(envelope_span_processor(derived_attributes))

    _declare_pipeline_series(counters, processors, profile.sentry_enabled)
    sampler = RouteAwareSampler(
        profile.traces_sample_rate if processors else 0.0,
        critical_routes=settings.critical_routes if processors else (),
        excluded_routes=settings.excluded_routes,
        traces_sampler=settings.traces_sampler,
        mark_critical=profile.collector,
        follow_parent=profile.follow_parent,
    )
    # Before any span records an exception: a hostile __str__ must not replace the app's
    # exception, nor a huge message be copied into every span it escapes.
    harden_exception_recording()
    app_provider = _app_tracer_provider() if profile.tracing_enabled else None
    if app_provider is not None:
        # Join the app's provider: every tracer's spans (third-party instrumentations
        # included) reach the same scrubbing and sinks. Its sampler and resource stay the
        # app's: a provider's sampler cannot be swapped (tracers already made keep theirs).
        provider = app_provider
        for processor in processors:
            provider.add_span_processor(processor)
    else:
        provider = build_tracer_provider(settings, sampler, processors)
        _own_providers.add(provider)
        if not _global_provider_is_set():
            trace.set_tracer_provider(provider)
    api.bind_tracer(provider.get_tracer("telemetry"))
    try:
        propagator = build_propagator(
            settings.otel_propagators,
            _dynamic_sampling_context(settings, profile),
            settings.propagation_targets,
        )
    except ValueError as exc:
        raise TelemetryConfigError(str(exc)) from None
    set_global_textmap(propagator)

    # Dependency metrics patch the libraries first, so OTel's wrappers sit outside them
    # and both come off cleanly, in reverse order, at shutdown.
    metered = metrics.instrument_dependencies() if metrics is not None else []
    if profile.sentry_enabled:
        record_breadcrumbs(SentryBreadcrumbs())
        undo.append(stop_breadcrumbs)
    genai = setup_genai(settings, metrics)  # GenAI series, price table, content capture
    undo.append(genai.close)
    # Statements of unsampled requests skip OTel's span work (their span is dropped anyway).
    skip_unsampled_statements()
    with genai.capture_mode():
        instrumented = instrument_libraries(
            provider,
            engines=engines,
            asyncio_coroutines=settings.asyncio_coroutines,
            cache_prefixes=settings.cache_prefixes,
            library_options=genai.instrument_options,
        )

    handle = TelemetryHandle(
        settings=settings,
        profile=profile,
        tracer_provider=provider,
        metrics=metrics,
        sentry_enabled=profile.sentry_enabled,
        sentry_traces=sentry_mode,
        instrumented=instrumented,
        owns_provider=app_provider is None,
        span_processors=list(processors),
        _undo=undo,
    )
    _log_initialized(
        settings,
        profile,
        sentry_mode,
        processors,
        instrumented.libraries,
        metered,
        sentry_client=_sentry_client_line(app_sentry, profile),
        tracer_provider="app" if app_provider is not None else "own",
    )
    return handle


def _start_sentry(
    settings: TelemetrySettings,
    profile: Profile,
    policy: ScrubbingPolicy,
    counters: Any,
    app_sentry: dict[str, Any] | None,
) -> None:
    excluded = RoutePatterns(settings.excluded_routes)
    scrubber = EventScrubber(policy)
    before_send = build_before_send(excluded.matches, scrubber.scrub_event, settings.before_send)
    if settings.sentry_dsn is not None:
        dsn = settings.sentry_dsn.get_secret_value()
        transport: Any = counting_transport(counters)
    else:
        from telemetry.file_sinks import SentryFileTransport

        assert settings.file_sink_dir is not None
        dsn = _FILE_SINK_DSN
        path = settings.file_sink_dir / "sentry-events.jsonl"
        transport = SentryFileTransport(path)
    init_sentry(
        settings,
        profile,
        before_send=before_send,
        before_send_transaction=scrubber.scrub_event,
        transport=transport,
        dsn=dsn,
        app_options=app_sentry,
    )


def _dynamic_sampling_context(
    settings: TelemetrySettings, profile: Profile
) -> DynamicSamplingContext | None:
    if not profile.sentry_enabled or settings.sentry_dsn is None:
        return None
    return DynamicSamplingContext(
        public_key=parse_dsn(settings.sentry_dsn.get_secret_value()).public_key,
        release=settings.release,
        environment=settings.sentry_environment_name,
        sample_rate=profile.traces_sample_rate,
    )


def _global_provider_is_set() -> bool:
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def _app_tracer_provider() -> TracerProvider | None:
    """The SDK provider the app (or a library) set globally before setup, if any."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider) and provider not in _own_providers:
        return provider
    return None


def _sentry_client_line(app_sentry: dict[str, Any] | None, profile: Profile) -> str | None:
    if app_sentry is None:
        return None
    if profile.sentry_enabled:
        return "adopted"
    return f"app's, left as it was ({profile.sentry_disabled_reason})"


def _is_fastapi(app: Any) -> bool:
    return any(cls.__module__.startswith("fastapi") for cls in type(app).__mro__)


def _route_of(metrics: TelemetryMetrics | None) -> RouteOf:
    """The metrics' route template (the same string as the ``route`` label)."""
    template = metrics.route_template if metrics is not None else RouteResolver().template

    def route_of(scope: Any, root_path: str, app: Any) -> str | None:
        route = template(scope, root_path, app)
        return None if route == UNMATCHED else route

    return route_of


def _wrap_outermost(app: Any, wrap: Callable[[Any], Any]) -> None:
    """Put ``wrap`` around the whole middleware stack Starlette builds, outside OTel's server
    span and every middleware the app adds before or after this call."""
    build = app.build_middleware_stack

    def build_middleware_stack() -> Any:
        return wrap(build())

    app.build_middleware_stack = build_middleware_stack
    app.middleware_stack = None  # rebuilt on the next request (Starlette builds lazily)


def _chain_lifespan(app: Any, handle: TelemetryHandle) -> None:
    """Flush on application shutdown, around the app's own lifespan (kept as it is)."""
    router = getattr(app, "router", None)
    if router is None or not hasattr(router, "lifespan_context"):
        return
    original = router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        if handle.sentry_enabled:
            # Task errors are captured once a loop runs (this is the first moment one does).
            enable_task_capture()
        async with original(app_) as state:
            yield state
        await asyncio.to_thread(handle.shutdown)

    router.lifespan_context = lifespan


def _log_initialized(
    settings: TelemetrySettings,
    profile: Profile,
    sentry_mode: SentryTracesMode,
    processors: Sequence[SpanProcessor],
    traced: list[str],
    metered: list[str],
    *,
    sentry_client: str | None = None,
    tracer_provider: str = "own",
) -> None:
    sentry = "on" if profile.sentry_enabled else f"off ({profile.sentry_disabled_reason})"
    sentry_host = (
        parse_dsn(settings.sentry_dsn.get_secret_value()).host
        if settings.sentry_dsn is not None
        else None
    )
    log_lifecycle(
        "telemetry_initialized",
        environment=settings.environment.value,
        service=settings.service_name,
        release=settings.release,
        sentry=sentry,
        sentry_host=sentry_host if profile.sentry_enabled else None,
        sentry_traces=sentry_mode.value,
        tracing="on" if profile.tracing_enabled else "off (OTEL_SDK_DISABLED)",
        sentry_client=sentry_client,
        tracer_provider=tracer_provider,
        traces=(
            "app's sampler"
            if tracer_provider == "app"
            else profile.traces_sample_rate
            if processors
            else 0.0
        ),
        traces_from=(
            "existing TracerProvider" if tracer_provider == "app" else profile.traces_rate_source
        ),
        fastapi=settings.fastapi_instrumentation,
        profiles=profile.profiles_sample_rate,
        export=settings.export_mode,
        jaeger=(settings.jaeger_traces_endpoint if profile.tracing_enabled else None) or "off",
        file_sink=str(settings.file_sink_dir) if settings.file_sink_dir else None,
        traced=",".join(traced) or "none",
        metered=",".join(metered) or "none",
    )


def _declare_pipeline_series(
    counters: Any, processors: Sequence[SpanProcessor], sentry_enabled: bool
) -> None:
    """Create every pipeline series at zero: a counter born at its first failure has no
    rate() for that failure, so the alert on it would miss the first one."""
    sinks = [
        sink for p in processors if isinstance(p, BoundedBatchSpanProcessor) for sink in p.sinks
    ]
    for sink in sinks:
        counters.spans_exported(sink, 0)
        counters.spans_failed(sink, 0)
        counters.spans_dropped(sink, 0)
    if sentry_enabled:
        counters.sentry_event_sent("error", 0)


def _segment_attributes(settings: TelemetrySettings) -> dict[str, str]:
    """What Sentry reads from a segment span in ``otlp`` mode (Relay's span schema)."""
    return {
        "sentry.release": settings.release or "",
        "sentry.environment": settings.environment.value,
        "sentry.platform": "python",
    }
