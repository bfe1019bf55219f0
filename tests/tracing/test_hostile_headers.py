"""Malformed, oversized, duplicated and conflicting trace headers never raise, never yield
an invalid or all-zero trace id, and start a new trace unless a header is well formed."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from telemetry.tracing.propagation import (
    DynamicSamplingContext,
    TelemetryPropagator,
    parse_sentry_trace,
)

PROPAGATOR = TelemetryPropagator(DynamicSamplingContext("pk", "svc@1", "production", 0.1))
TRACER = TracerProvider(sampler=ALWAYS_ON).get_tracer("hostile")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
VALID_TRACE = "0af7651916cd43dd8448eb211c80319c"
VALID_PARENT = "b7ad6b7169203331"

header_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="0123456789abcdefABCDEF-", max_size=80),
    st.builds(
        lambda a, b, c: f"00-{a}-{b}-{c}",
        st.text(alphabet="0123456789abcdef", max_size=34),
        st.text(alphabet="0123456789abcdef", max_size=18),
        st.text(alphabet="0123456789abcdef", max_size=3),
    ),
    st.just("00-" + "0" * 32 + "-" + VALID_PARENT + "-01"),
    st.just(VALID_TRACE + "-" + "0" * 16 + "-1"),
    st.just("x" * 20000),
)
values = st.lists(header_text, min_size=1, max_size=3)


def well_formed_w3c(values: list[str]) -> bool:
    context = TraceContextTextMapPropagator().extract({"traceparent": values})
    return trace.get_current_span(context).get_span_context().is_valid


@settings(max_examples=300, deadline=None)
@given(traceparent=values, sentry_trace=values, baggage=values)
def test_extract_never_raises_and_the_trace_is_always_valid(
    traceparent: list[str], sentry_trace: list[str], baggage: list[str]
) -> None:
    carrier = {"traceparent": traceparent, "sentry-trace": sentry_trace, "baggage": baggage}
    context = PROPAGATOR.extract(carrier)
    parent = trace.get_current_span(context).get_span_context()
    continued = well_formed_w3c(traceparent) or parse_sentry_trace(sentry_trace[0]) is not None
    assert parent.is_valid == continued
    with TRACER.start_as_current_span("server", context=context) as span:
        span_context = span.get_span_context()
        trace_id = trace.format_trace_id(span_context.trace_id)
        assert HEX32.match(trace_id) and span_context.trace_id != 0
        assert span_context.span_id != 0
        if continued:
            assert span_context.trace_id == parent.trace_id
        outgoing: dict[str, str] = {}
        PROPAGATOR.inject(outgoing)
    assert len(outgoing.get("baggage", "")) <= 8192
    assert outgoing["sentry-trace"].startswith(trace_id)
    assert outgoing["traceparent"].split("-")[1] == trace_id


@given(st.text(max_size=500))
def test_an_invalid_sentry_trace_does_not_poison_a_valid_traceparent(garbage: str) -> None:
    context = PROPAGATOR.extract(
        {"traceparent": f"00-{VALID_TRACE}-{VALID_PARENT}-01", "sentry-trace": garbage}
    )
    assert trace.format_trace_id(trace.get_current_span(context).get_span_context().trace_id) == (
        VALID_TRACE
    )


@given(st.text(max_size=500))
def test_an_invalid_traceparent_does_not_poison_a_valid_sentry_trace(garbage: str) -> None:
    if well_formed_w3c([garbage]):
        return
    context = PROPAGATOR.extract(
        {"traceparent": garbage, "sentry-trace": f"{VALID_TRACE}-{VALID_PARENT}-1"}
    )
    assert trace.format_trace_id(trace.get_current_span(context).get_span_context().trace_id) == (
        VALID_TRACE
    )


def test_huge_baggage_is_ignored_not_copied() -> None:
    huge = ",".join(f"k{i}=" + "v" * 100 for i in range(500))
    context = PROPAGATOR.extract({"baggage": huge})
    outgoing: dict[str, str] = {}
    with TRACER.start_as_current_span("s", context=context):
        PROPAGATOR.inject(outgoing)
    assert len(outgoing["baggage"]) < 1000
