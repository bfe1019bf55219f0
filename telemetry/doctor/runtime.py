"""The in-process check of ``telemetry doctor``: how sentry-sdk and OpenTelemetry are wired
in the live process (double tracing, sentry-sdk's web integrations, the global propagator).
Only meaningful when :func:`telemetry.doctor.run_checks` runs inside the service.
"""

from __future__ import annotations

from telemetry.doctor.checks import CheckResult, Status

__all__ = ["check_runtime"]


_PROBE_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
_PROBE_SPAN_ID = 0x00F067AA0BA902B7


def _propagator_result() -> CheckResult:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.propagate import get_global_textmap
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    propagator = get_global_textmap()
    kind = type(propagator).__name__
    span = NonRecordingSpan(
        SpanContext(_PROBE_TRACE_ID, _PROBE_SPAN_ID, False, TraceFlags(TraceFlags.SAMPLED))
    )
    carrier: dict[str, str] = {}
    try:
        propagator.inject(carrier, context=trace.set_span_in_context(span, Context()))
    except Exception as error:  # a broken propagator must show up here, not in production
        carrier = {}
        kind = f"{kind} (inject raised {error!r})"
    if f"{_PROBE_TRACE_ID:032x}" in carrier.get("traceparent", ""):
        return CheckResult(
            "runtime.propagator",
            Status.PASS,
            f"the global propagator ({kind}) writes {', '.join(sorted(carrier))}",
        )
    return CheckResult(
        "runtime.propagator",
        Status.WARN,
        f"the global propagator ({kind}) does not write traceparent "
        f"(wrote: {', '.join(sorted(carrier)) or 'nothing'}): downstream services start new traces",
        "call setup_telemetry() after any sentry_sdk.init(); with sentry-sdk's OTLPIntegration "
        "pass setup_propagator=False",
    )


def check_runtime() -> list[CheckResult]:
    """Double instrumentation and propagation, as wired in *this* process."""
    import sentry_sdk
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    client = sentry_sdk.get_client()
    otel_set = isinstance(trace.get_tracer_provider(), TracerProvider)
    if not client.is_active() and not otel_set:
        return [
            CheckResult(
                "runtime",
                Status.SKIP,
                "neither sentry-sdk nor OpenTelemetry is initialised in this process (the CLI "
                "runs beside the service, not inside it)",
                "to check the live wiring call telemetry.doctor.run_checks() inside the service",
            )
        ]
    results: list[CheckResult] = []
    if client.is_active():
        options = client.options
        tracing = options.get("traces_sample_rate") is not None or options.get("traces_sampler")
        if tracing and options.get("instrumenter") != "otel":
            results.append(
                CheckResult(
                    "runtime.sentry-tracing",
                    Status.WARN,
                    "sentry-sdk's own performance tracing is on beside OpenTelemetry "
                    f"(traces_sample_rate={options.get('traces_sample_rate')}, "
                    f"instrumenter={options.get('instrumenter')!r}): requests are traced twice "
                    "and Sentry samples a different subset than Jaeger",
                    "let setup_telemetry() initialise sentry-sdk, or drop traces_sample_rate/"
                    "traces_sampler from your sentry_sdk.init()",
                )
            )
        else:
            results.append(
                CheckResult(
                    "runtime.sentry-tracing",
                    Status.PASS,
                    "sentry-sdk leaves tracing to OpenTelemetry",
                )
            )
        web = sorted(set(client.integrations) & {"starlette", "fastapi"})
        if web:
            results.append(
                CheckResult(
                    "runtime.sentry-web-integration",
                    Status.WARN,
                    f"sentry-sdk's {'/'.join(web)} integration is active: its middleware runs "
                    "outside OTel's server span, so unhandled errors get another trace id",
                    "initialise sentry-sdk with auto_enabling_integrations=False (what "
                    "setup_telemetry does) or disabled_integrations=[StarletteIntegration(), "
                    "FastApiIntegration()]",
                )
            )
    results.append(_propagator_result())
    return results
