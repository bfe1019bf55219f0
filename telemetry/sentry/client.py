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
import platform
import sys
from typing import Any, cast

import sentry_sdk
from sentry_sdk.consts import VERSION as SENTRY_SDK_VERSION
from sentry_sdk.integrations import Integration
from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger
from sentry_sdk.scope import add_global_event_processor

from telemetry.profile import Profile
from telemetry.sentry.events import (
    IGNORED_EXCEPTIONS,
    EventHook,
    mark_suppressed,
    otel_trace_context,
    remember_failing_spans,
)
from telemetry.sentry.sdk_internals import mark_dedupe_drops
from telemetry.settings import SentryTracesMode, TelemetrySettings, parse_dsn
from telemetry.shared import PIPELINE_LOGGERS, OTLPHttpTarget

__all__ = [
    "init_sentry",
    "profiler_span_attributes",
    "sentry_otlp_target",
]

logger = logging.getLogger("telemetry.sentry")


def sentry_otlp_target(settings: TelemetrySettings) -> OTLPHttpTarget:
    """The Sentry arm in ``otlp`` mode: the project's OTLP endpoint derived from the DSN,
    with its auth header. A server without OTLP ingestion switches the arm off, once."""
    assert settings.sentry_dsn is not None
    dsn = parse_dsn(settings.sentry_dsn.get_secret_value())
    auth = dsn.auth_header(client=f"telemetry/sentry.python/{SENTRY_SDK_VERSION}")
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
    mode = profile.sentry_traces
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
        # The OTel sampler is the only one: sentry-sdk's backpressure monitor would
        # down-sample transactions (and so traces) whenever its queue fills.
        enable_backpressure_handling=False,
        **options,
    )
    if mode is SentryTracesMode.ENVELOPE:
        from sentry_sdk.scope import register_external_propagation_context

        # Without it, errors of unsampled requests would get a random trace id.
        register_external_propagation_context(otel_trace_context)
    remember_failing_spans()
    _add_runtime_context()
    mark_dedupe_drops(mark_suppressed)
    if options:
        from sentry_sdk.profiler import start_profiler

        start_profiler()


_runtime_context_added = False


def _add_runtime_context() -> None:
    """The ``runtime`` context sentry-sdk's stdlib integration adds to every event; that
    integration stays off (its httplib spans would duplicate OpenTelemetry's)."""
    global _runtime_context_added
    if _runtime_context_added:
        return
    runtime = {
        "name": platform.python_implementation(),
        "version": "{}.{}.{}".format(*sys.version_info[:3]),
        "build": sys.version,
    }

    def add_runtime(event: Any, hint: Any) -> Any:
        contexts = event.setdefault("contexts", {})
        if isinstance(contexts, dict) and "runtime" not in contexts:
            contexts["runtime"] = dict(runtime)
        return event

    add_global_event_processor(add_runtime)
    _runtime_context_added = True


def profiler_span_attributes() -> dict[str, str]:
    """Span attributes that link a span to Sentry's continuous profile of this process."""
    from sentry_sdk.profiler.continuous_profiler import get_profiler_id

    profiler_id = get_profiler_id()
    return {"profiler_id": profiler_id} if profiler_id else {}
