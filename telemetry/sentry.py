"""The Sentry side: error events, and the Sentry arm of the span fan-out.

sentry-sdk is initialised for errors only: OpenTelemetry owns tracing, so sentry-sdk's own
web, database and HTTP-client integrations stay off (no second instrumentation on the
request path). Spans reach Sentry through :class:`SentrySpanProcessor`, in one of two modes:

* ``otlp``: OTLP/HTTP export to the project's OTLP endpoint derived from the DSN, behind the
  same scrubbing and bounded queue as Jaeger's arm;
* ``envelope``: sentry-sdk's envelope span processor, for Sentry-compatible servers without
  OTLP ingestion, with Sentry's own rate held at 1.0 so OTel's decision stands.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import sentry_sdk
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import INVALID_SPAN_ID, SpanKind, format_span_id, format_trace_id
from opentelemetry.trace import get_current_span as otel_current_span
from sentry_sdk.consts import VERSION as SENTRY_SDK_VERSION
from sentry_sdk.integrations import Integration
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
from sentry_sdk.transport import HttpTransport, Transport

from telemetry.settings import (
    BeforeSend,
    Profile,
    SentryTracesMode,
    TelemetrySettings,
    parse_dsn,
)
from telemetry.tracing import (
    ExporterWrapper,
    MonitoredSpanExporter,
    PipelineCounters,
    sink_processor,
)

__all__ = [
    "IGNORED_EXCEPTIONS",
    "SentryCounters",
    "SentrySpanProcessor",
    "build_before_send",
    "init_sentry",
]

logger = logging.getLogger("telemetry.sentry")

#: Loggers of the telemetry pipeline itself: their failures must never become Sentry events
#: (an exporter failing against Sentry would otherwise report itself to Sentry, forever).
PIPELINE_LOGGERS = ("opentelemetry*", "telemetry.*", "telemetry", "sentry_sdk*", "urllib3*")

IGNORED_EXCEPTION_NAMES = ("httpx.HTTPStatusError",)
IGNORED_EXCEPTIONS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit)

TRANSACTION_ATTRIBUTE = "telemetry.transaction"
EventHook = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]


class SentryCounters(PipelineCounters, Protocol):
    def sentry_event_sent(self, kind: str, count: int = 1) -> None: ...
    def sentry_event_dropped(self, kind: str, reason: str, count: int = 1) -> None: ...


# -- the Sentry arm of the span fan-out ------------------------------------------------------


class SentrySpanProcessor(SpanProcessor):
    """The Sentry arm of the fan-out: one processor, two transports (see module doc)."""

    def __init__(
        self,
        mode: SentryTracesMode,
        settings: TelemetrySettings,
        counters: PipelineCounters,
        wrap_exporter: ExporterWrapper | None = None,
    ) -> None:
        if mode is SentryTracesMode.OFF:
            raise ValueError("SentrySpanProcessor needs mode otlp or envelope")
        self.mode = mode
        self.exporter: MonitoredSpanExporter | None = None
        self._delegate: SpanProcessor
        if mode is SentryTracesMode.OTLP:
            self._delegate, self.exporter = sink_processor(
                "sentry", _sentry_otlp_exporter(settings, self), settings, counters, wrap_exporter
            )
        else:
            self._delegate = _EnvelopeSpanProcessor()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._delegate.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._delegate.on_end(span)

    def shutdown(self) -> None:
        self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self.mode is SentryTracesMode.ENVELOPE:
            client = sentry_sdk.get_client()
            client.flush(timeout=timeout_millis / 1000)
            return True
        return self._delegate.force_flush(timeout_millis)

    def server_refused_otlp(self, status: int) -> None:
        if self.exporter is not None:
            self.exporter.disable(
                f"the Sentry server answered HTTP {status} on its OTLP endpoint (no OTLP "
                "ingestion); set TELEMETRY_SENTRY_TRACES=envelope for this server, or off"
            )


def _sentry_otlp_exporter(settings: TelemetrySettings, arm: SentrySpanProcessor) -> Any:
    import requests
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    assert settings.sentry_dsn is not None
    dsn = parse_dsn(settings.sentry_dsn.get_secret_value())
    auth = (
        f"Sentry sentry_key={dsn.public_key}, sentry_version=7, "
        f"sentry_client=telemetry/sentry.python/{SENTRY_SDK_VERSION}"
    )
    session = requests.Session()

    def on_response(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if response.status_code in (404, 405, 501):
            arm.server_refused_otlp(response.status_code)

    session.hooks["response"].append(on_response)
    return OTLPSpanExporter(
        endpoint=dsn.otlp_traces_url,
        headers={"X-Sentry-Auth": auth},
        timeout=settings.export_timeout_seconds,
        session=session,
    )


def _envelope_base() -> type[SpanProcessor]:
    from sentry_sdk.integrations.opentelemetry.span_processor import (
        SentrySpanProcessor as SdkSentrySpanProcessor,
    )

    return SdkSentrySpanProcessor


class _EnvelopeSpanProcessor(_envelope_base()):  # type: ignore[misc]
    """sentry-sdk's envelope processor, limited to what is a transaction for a user.

    Left alone it makes every parentless OTel span a transaction: start-up DB connects,
    scrapes, stray background work. Here only server/consumer spans, spans continuing a
    remote caller and explicit ``start_transaction`` spans start a transaction; their
    descendants become its child spans.
    """

    def on_start(self, otel_span: Any, parent_context: Context | None = None) -> None:
        parent = otel_span.parent
        if parent is None or parent.is_remote:
            if not _is_transaction_root(otel_span):
                return
        elif format_span_id(parent.span_id) not in self.otel_span_map:
            return
        super().on_start(otel_span, parent_context)

    def _update_span_with_otel_data(self, sentry_span: Any, otel_span: Any) -> None:
        super()._update_span_with_otel_data(sentry_span, otel_span)
        _apply_sentry_op(sentry_span, otel_span)

    def _update_transaction_with_otel_data(self, sentry_span: Any, otel_span: Any) -> None:
        super()._update_transaction_with_otel_data(sentry_span, otel_span)
        _apply_sentry_op(sentry_span, otel_span)


def _is_transaction_root(span: ReadableSpan) -> bool:
    if span.kind in (SpanKind.SERVER, SpanKind.CONSUMER):
        return True
    if span.parent is not None and span.parent.is_remote:
        return True
    return bool((span.attributes or {}).get(TRANSACTION_ATTRIBUTE))


def _apply_sentry_op(sentry_span: Any, otel_span: ReadableSpan) -> None:
    attributes = otel_span.attributes or {}
    op = attributes.get("sentry.op")
    if isinstance(op, str):
        sentry_span.op = op
    description = attributes.get("sentry.description")
    if isinstance(description, str):
        sentry_span.description = description


# -- error events ------------------------------------------------------------------------------


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
        if exc_info and exc_info[1] is not None and _is_ignored(exc_info[1]):
            return None
        request = event.get("request") or {}
        url = request.get("url") if isinstance(request, dict) else None
        if isinstance(url, str) and is_excluded_path(_path_of(url)):
            return None
        _attach_failing_span(event, exc_info)
        result: dict[str, Any] | None = event
        if user_hook is not None:
            result = user_hook(event, hint)
            if result is None:
                return None
        return scrub(result, hint) if scrub is not None else result  # type: ignore[arg-type]

    return before_send


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


# -- transport ---------------------------------------------------------------------------


def counting_transport(counters: SentryCounters, base: type[Transport] = HttpTransport) -> type:
    """A transport class that reports sent and lost envelopes items to ``/metrics``."""

    class CountingTransport(base):  # type: ignore[valid-type,misc]
        def _handle_response(self, response: Any, envelope: Any) -> None:
            if envelope is not None and 200 <= response.status < 300:
                for item in envelope.items:
                    counters.sentry_event_sent(item.data_category or item.type or "unknown", 1)
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
            counters.sentry_event_dropped(str(kind), reason, quantity)
            super().record_lost_event(reason, data_category, item, quantity=quantity)

    return CountingTransport


def init_sentry(
    settings: TelemetrySettings,
    profile: Profile,
    *,
    before_send: EventHook,
    before_send_transaction: EventHook | None,
    before_breadcrumb: EventHook | None,
    transport: Any,
    dsn: str,
) -> None:
    """Initialise sentry-sdk for errors (and envelope transactions), off the request path."""
    from sentry_sdk.integrations.asyncio import AsyncioIntegration
    from sentry_sdk.integrations.stdlib import StdlibIntegration

    for name in PIPELINE_LOGGERS:
        ignore_logger(name)
    mode = settings.sentry_traces
    integrations: list[Integration] = [
        LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        AsyncioIntegration(),
    ]
    disabled: list[type[Integration]] = [StdlibIntegration]
    if mode is not SentryTracesMode.ENVELOPE:
        from sentry_sdk.integrations.otlp import OTLPIntegration

        # Trace linking only: our propagator and our exporter (with scrubbing) stay in place.
        integrations.append(
            OTLPIntegration(
                setup_otlp_traces_exporter=False, setup_propagator=False, capture_exceptions=False
            )
        )
    options: dict[str, Any] = {}
    if profile.profiles_sample_rate > 0:
        options.update(
            profile_session_sample_rate=profile.profiles_sample_rate,
            profile_lifecycle="manual",
        )
    sentry_sdk.init(
        dsn=dsn,
        transport=transport,
        environment=settings.environment.value,
        release=settings.release,
        server_name=None,
        send_default_pii=False,
        sample_rate=settings.errors_sample_rate,
        traces_sample_rate=1.0 if mode is SentryTracesMode.ENVELOPE else None,
        instrumenter="otel" if mode is SentryTracesMode.ENVELOPE else "sentry",
        integrations=integrations,
        disabled_integrations=disabled,
        auto_enabling_integrations=False,
        default_integrations=True,
        before_send=cast(Any, before_send),
        before_send_transaction=cast(Any, before_send_transaction),
        before_breadcrumb=before_breadcrumb,
        ignore_errors=list(IGNORED_EXCEPTIONS),
        max_request_body_size="never",
        include_local_variables=True,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        **options,
    )
    if mode is SentryTracesMode.ENVELOPE:
        from sentry_sdk.scope import register_external_propagation_context

        # Errors of unsampled requests still carry the OTel trace id (DESIGN trap 4).
        register_external_propagation_context(otel_trace_context)
    remember_failing_spans()
    if options:
        from sentry_sdk.profiler import start_profiler

        start_profiler()


def profiler_span_attributes() -> dict[str, str]:
    """Span attributes that link a span to Sentry's continuous profile of this process."""
    from sentry_sdk.profiler.continuous_profiler import get_profiler_id

    profiler_id = get_profiler_id()
    return {"profiler_id": profiler_id} if profiler_id else {}


def ignored_exception_names() -> Sequence[str]:
    return [*(e.__name__ for e in IGNORED_EXCEPTIONS), *IGNORED_EXCEPTION_NAMES]
