from __future__ import annotations

from opentelemetry import baggage, trace
from opentelemetry.context import attach, detach, get_value
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from telemetry.tracing.propagation import (
    DEFERRED_SAMPLING_KEY,
    DynamicSamplingContext,
    TelemetryPropagator,
    parse_sentry_trace,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
DSC = DynamicSamplingContext(
    public_key="pk", release="svc@1.0", environment="production", sample_rate=0.1
)


def span_context_of(carrier: dict[str, str]) -> trace.SpanContext:
    context = TelemetryPropagator().extract(carrier)
    return trace.get_current_span(context).get_span_context()


def test_traceparent_is_continued() -> None:
    ctx = span_context_of({"traceparent": f"00-{TRACE}-{PARENT}-01"})
    assert (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") == (TRACE, PARENT)
    assert ctx.trace_flags.sampled and ctx.is_remote


def test_sentry_trace_is_continued_with_its_decision() -> None:
    ctx = span_context_of({"sentry-trace": f"{TRACE}-{PARENT}-0"})
    assert f"{ctx.trace_id:032x}" == TRACE
    assert not ctx.trace_flags.sampled


def test_sentry_trace_without_decision_defers() -> None:
    context = TelemetryPropagator().extract({"sentry-trace": f"{TRACE}-{PARENT}"})
    assert get_value(DEFERRED_SAMPLING_KEY, context) is True


def test_w3c_wins_and_a_bad_header_does_not_poison_the_other() -> None:
    other = "1" * 32
    ctx = span_context_of(
        {"traceparent": f"00-{TRACE}-{PARENT}-01", "sentry-trace": f"{other}-{PARENT}-1"}
    )
    assert f"{ctx.trace_id:032x}" == TRACE
    ctx = span_context_of({"traceparent": "00-garbage-01", "sentry-trace": f"{TRACE}-{PARENT}-1"})
    assert f"{ctx.trace_id:032x}" == TRACE
    ctx = span_context_of({"traceparent": f"00-{TRACE}-{PARENT}-01", "sentry-trace": "nope"})
    assert f"{ctx.trace_id:032x}" == TRACE


def test_malformed_headers_start_a_new_trace() -> None:
    for bad in (
        {"traceparent": "00-" + "0" * 32 + f"-{PARENT}-01"},
        {"sentry-trace": "0" * 32 + f"-{PARENT}-1"},
        {"sentry-trace": "x" * 10000},
    ):
        assert not span_context_of(bad).is_valid
    assert parse_sentry_trace(f"{TRACE}-{'0' * 16}-1") is None


def test_inject_writes_agreeing_headers_and_keeps_app_baggage() -> None:
    provider = TracerProvider(sampler=ALWAYS_ON)
    tracer = provider.get_tracer("test")
    propagator = TelemetryPropagator(DSC)
    incoming = propagator.extract(
        {"traceparent": f"00-{TRACE}-{PARENT}-01", "baggage": "tenant=acme,feature=rag%20search"}
    )
    token = attach(incoming)
    try:
        with tracer.start_as_current_span("client") as span:
            carrier: dict[str, str] = {}
            propagator.inject(carrier)
            span_id = f"{span.get_span_context().span_id:016x}"
    finally:
        detach(token)
    assert carrier["traceparent"] == f"00-{TRACE}-{span_id}-01"
    assert carrier["sentry-trace"] == f"{TRACE}-{span_id}-1"
    items = dict(member.split("=", 1) for member in carrier["baggage"].split(","))
    assert items["tenant"] == "acme"
    assert items["feature"] == "rag%20search"
    assert items["sentry-trace_id"] == TRACE
    assert items["sentry-sampled"] == "true"
    assert items["sentry-public_key"] == "pk"
    assert items["sentry-release"] == "svc%401.0"


def test_incoming_sentry_baggage_is_passed_on_frozen() -> None:
    propagator = TelemetryPropagator(DSC)
    incoming = propagator.extract(
        {
            "sentry-trace": f"{TRACE}-{PARENT}-1",
            "baggage": f"sentry-trace_id={TRACE},sentry-public_key=upstream,sentry-sample_rate=0.5",
        }
    )
    assert baggage.get_all(incoming) == {}
    carrier: dict[str, str] = {}
    propagator.inject(carrier, incoming)
    assert "sentry-public_key=upstream" in carrier["baggage"]
    assert "sentry-public_key=pk" not in carrier["baggage"]


def test_header_names_read_are_known_only_for_the_bridge_propagator() -> None:
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from telemetry.tracing.propagation import build_propagator, header_names_read

    names = header_names_read(build_propagator(None, None))
    assert names == frozenset({b"traceparent", b"tracestate", b"sentry-trace", b"baggage"})
    # Other propagators may read headers their ``fields`` do not name: always extracted.
    assert header_names_read(TraceContextTextMapPropagator()) is None
    assert header_names_read(CompositePropagator([TraceContextTextMapPropagator()])) is None
