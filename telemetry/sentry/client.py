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
import weakref
from collections.abc import Mapping
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
    "existing_sentry_options",
    "init_sentry",
    "profiler_span_attributes",
    "sentry_otlp_target",
]

logger = logging.getLogger("telemetry.sentry")

#: Clients this library made: after a shutdown the closed client stays on sentry-sdk's
#: global scope, and must not be taken for an app's own client by a later setup.
_own_clients: weakref.WeakSet[Any] = weakref.WeakSet()

#: Options of an app's own client that are kept as they are when it is adopted. The rest
#: is the bridge's: DSN, release, environment, rates and before_send come back through the
#: settings (``profile.adopt_sentry_client``); transport, tracing mode, integrations and
#: the other hooks are merged below.
_KEPT_OPTIONS = (
    "dist", "max_breadcrumbs", "before_breadcrumb", "attach_stacktrace", "send_default_pii",
    "in_app_include", "in_app_exclude", "max_value_length", "include_source_context",
    "add_full_stack", "max_stack_frames", "http_proxy", "https_proxy", "proxy_headers",
    "ca_certs", "cert_file", "key_file", "keep_alive", "socket_options", "error_sampler",
    "event_scrubber", "debug",
)  # fmt: skip
#: The app's integrations that would instrument a second time what OpenTelemetry (or the
#: bridge's own logging and asyncio integrations) already does: dropped when adopted.
_REPLACED_INTEGRATIONS = frozenset({
    "asgi", "starlette", "fastapi", "stdlib", "httpx", "sqlalchemy", "redis", "asyncio",
    "logging", "otlp", "opentelemetry", "aiohttp", "requests",
})  # fmt: skip


def existing_sentry_options() -> dict[str, Any] | None:
    """The options of a sentry-sdk client the app initialised before ``setup_telemetry``
    (None when there is none, it sends nothing: no DSN or already closed, or it is one
    this library made)."""
    client = sentry_sdk.get_client()
    if not client.is_active() or client in _own_clients:
        return None
    if not client.options.get("dsn") or getattr(client, "transport", None) is None:
        return None
    return dict(client.options)


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
    transport: Any,
    dsn: str,
    app_options: Mapping[str, Any] | None = None,
) -> None:
    """Initialise sentry-sdk for errors (and envelope transactions), off the request path.

    ``app_options``: the app's own client (``existing_sentry_options``), adopted: sentry-sdk
    has no way to add integrations, hooks or a transport to a live client, so it is
    re-initialised with the app's options merged into the bridge's, and the app's old
    client is flushed and closed (nothing it queued is lost).
    """
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
    previous = sentry_sdk.get_client() if app_options is not None else None
    if app_options is not None:
        options, integrations, disabled = _merge_app_options(
            app_options, integrations, disabled, before_send_transaction
        )
        before_send_transaction = options.pop("before_send_transaction")
    ignored = list(IGNORED_EXCEPTIONS) + list(options.pop("ignore_errors", ()))
    profiling = profile.profiles_sample_rate > 0
    if profiling:
        options.update(
            profile_session_sample_rate=profile.profiles_sample_rate,
            profile_lifecycle="manual",
        )
    init_options: dict[str, Any] = {
        "dsn": dsn,
        "transport": transport,
        "environment": settings.sentry_environment_name,
        "release": settings.release,
        "server_name": None,
        "send_default_pii": False,
        "sample_rate": settings.errors_sample_rate,
        "traces_sample_rate": 1.0 if mode is SentryTracesMode.ENVELOPE else None,
        "instrumenter": "otel" if mode is SentryTracesMode.ENVELOPE else "sentry",
        "integrations": integrations,
        "disabled_integrations": disabled,
        "auto_enabling_integrations": False,
        "default_integrations": True,
        "before_send": cast(Any, before_send),
        "before_send_transaction": cast(Any, before_send_transaction),
        # No breadcrumb hook of the bridge's: an event's breadcrumbs are scrubbed with the
        # event (before_send), not each of the many a request adds and never sends. An
        # adopted app's own before_breadcrumb is kept (``_KEPT_OPTIONS``).
        "ignore_errors": ignored,
        "max_request_body_size": "never",
        "include_local_variables": True,
        "shutdown_timeout": settings.shutdown_timeout_seconds,
        # The OTel sampler is the only one: sentry-sdk's backpressure monitor would
        # down-sample transactions (and so traces) whenever its queue fills.
        "enable_backpressure_handling": False,
    }
    # The app's kept options (adopted client) and the profiler's.
    init_options.update(options)
    sentry_sdk.init(**init_options)
    _own_clients.add(sentry_sdk.get_client())
    if previous is not None and previous.is_active():
        previous.close(timeout=min(2.0, settings.shutdown_timeout_seconds))
    if mode is SentryTracesMode.ENVELOPE:
        from sentry_sdk.scope import register_external_propagation_context

        # Without it, errors of unsampled requests would get a random trace id.
        register_external_propagation_context(otel_trace_context)
    remember_failing_spans()
    _add_runtime_context()
    mark_dedupe_drops(mark_suppressed)
    if profiling:
        from sentry_sdk.profiler import start_profiler

        start_profiler()


def _merge_app_options(
    app: Mapping[str, Any],
    integrations: list[Integration],
    disabled: list[type[Integration]],
    before_send_transaction: EventHook | None,
) -> tuple[dict[str, Any], list[Integration], list[type[Integration]]]:
    from sentry_sdk.consts import DEFAULT_OPTIONS

    kept = {
        key: app[key]
        for key in _KEPT_OPTIONS
        if key in app and key in DEFAULT_OPTIONS and app[key] != DEFAULT_OPTIONS[key]
    }
    ours = {i.identifier for i in integrations}
    merged = list(integrations) + [
        i
        for i in app.get("integrations") or ()
        if getattr(i, "identifier", None) not in _REPLACED_INTEGRATIONS | ours
    ]
    disabled = list(disabled) + [
        d for d in app.get("disabled_integrations") or () if d not in disabled
    ]
    kept["before_send_transaction"] = _then(
        app.get("before_send_transaction"), before_send_transaction
    )
    kept["ignore_errors"] = list(app.get("ignore_errors") or ())
    return kept, merged, disabled


def _then(first: Any, second: EventHook | None) -> Any:
    """The app's hook first, then the bridge's (scrubbing last: what the app's hook adds is
    scrubbed too)."""
    if first is None:
        return second
    if second is None:
        return first

    def chained(event: Any, hint: Any) -> Any:
        event = first(event, hint)
        return None if event is None else second(event, hint)

    return chained


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
