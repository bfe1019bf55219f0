"""The Sentry side: error events, and the Sentry arm of the span fan-out.

sentry-sdk is initialised for errors only: OpenTelemetry owns tracing, so sentry-sdk's own
web, database and HTTP-client integrations stay off (no second instrumentation on the
request path). Spans reach Sentry in one of two modes:

* ``otlp``: OTLP/HTTP export to the project's OTLP endpoint derived from the DSN, one target
  of the same fan-out as Jaeger's (each batch scrubbed and encoded once for both);
* ``envelope``: sentry-sdk's envelope span processor, for Sentry-compatible servers without
  OTLP ingestion, with Sentry's own rate held at 1.0 so OTel's decision stands.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import sentry_sdk
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, format_span_id
from sentry_sdk.consts import VERSION as SENTRY_SDK_VERSION
from sentry_sdk.integrations import Integration
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger

from telemetry._fanout import OTLPHttpTarget
from telemetry._sentry_events import (
    IGNORED_EXCEPTIONS,
    EventHook,
    otel_trace_context,
    remember_failing_spans,
)
from telemetry.settings import (
    Profile,
    SentryTracesMode,
    TelemetrySettings,
    parse_dsn,
)

__all__ = [
    "SentrySpanProcessor",
    "init_sentry",
    "profiler_span_attributes",
    "sentry_otlp_target",
]

logger = logging.getLogger("telemetry.sentry")

#: Loggers of the telemetry pipeline itself: their failures must never become Sentry events
#: (an exporter failing against Sentry would otherwise report itself to Sentry, forever).
PIPELINE_LOGGERS = ("opentelemetry*", "telemetry.*", "telemetry", "sentry_sdk*", "urllib3*")


TRANSACTION_ATTRIBUTE = "telemetry.transaction"


# -- the Sentry arm of the span fan-out ------------------------------------------------------


class SentrySpanProcessor(SpanProcessor):
    """The Sentry arm of the fan-out in ``envelope`` mode: sentry-sdk's envelope processor,
    limited to what is a transaction for a user. (In ``otlp`` mode the arm is
    :func:`sentry_otlp_target`, one target of the shared OTLP fan-out.)"""

    def __init__(self) -> None:
        self._delegate = _EnvelopeSpanProcessor()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._delegate.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._delegate.on_end(span)

    def shutdown(self) -> None:
        self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        sentry_sdk.get_client().flush(timeout=timeout_millis / 1000)
        return True


def sentry_otlp_target(settings: TelemetrySettings) -> OTLPHttpTarget:
    """The Sentry arm in ``otlp`` mode: the project's OTLP endpoint derived from the DSN,
    with its auth header. A server without OTLP ingestion switches the arm off, once."""
    assert settings.sentry_dsn is not None
    dsn = parse_dsn(settings.sentry_dsn.get_secret_value())
    auth = (
        f"Sentry sentry_key={dsn.public_key}, sentry_version=7, "
        f"sentry_client=telemetry/sentry.python/{SENTRY_SDK_VERSION}"
    )
    return OTLPHttpTarget(
        sink="sentry",
        endpoint=dsn.otlp_traces_url,
        headers={"X-Sentry-Auth": auth},
        no_ingestion_statuses=frozenset({404, 405, 501}),
        no_ingestion_message=(
            "the Sentry server has no OTLP ingestion (it answers 404 on its OTLP endpoint); "
            "set TELEMETRY_SENTRY_TRACES=envelope for this server, or off"
        ),
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
    elif isinstance(operation := attributes.get("gen_ai.operation.name"), str) and operation:
        # What Relay derives for OTLP spans; envelope spans arrive with the span name as op,
        # which Sentry's AI views (filtering on gen_ai.* ops) would not find.
        sentry_span.op = f"gen_ai.{operation}"
    description = attributes.get("sentry.description")
    if isinstance(description, str):
        sentry_span.description = description


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
        # Task errors only: Sentry does no tracing here, so no Sentry span per task.
        AsyncioIntegration(task_spans=False),
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
