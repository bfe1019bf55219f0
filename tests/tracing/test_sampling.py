from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import set_value
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from telemetry.tracing.propagation import DEFERRED_SAMPLING_KEY
from telemetry.tracing.sampling import RouteAwareSampler, RoutePatterns

CRITICAL = ["/api/v1/agents/execute"]
EXCLUDED = ["/health/*", "/metrics"]


def server(
    sampler: RouteAwareSampler, route: str, trace_id: int = 1, parent: Any = None
) -> Decision:
    return sampler.should_sample(
        parent, trace_id, f"GET {route}", SpanKind.SERVER, {"http.route": route}
    ).decision


def remote_parent(sampled: bool) -> Any:
    ctx = SpanContext(
        trace_id=0xABC,
        span_id=0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def test_route_patterns() -> None:
    patterns = RoutePatterns(EXCLUDED)
    assert patterns.matches("/health/live")
    assert patterns.matches("/health")
    assert patterns.matches("/metrics?x=1")
    assert not patterns.matches("/api/health/live")
    assert not patterns.matches("/metricsfoo")
    regex = patterns.as_url_regexes()
    assert "health" in regex


def test_excluded_routes_are_never_traced_even_with_a_sampled_parent() -> None:
    sampler = RouteAwareSampler(1.0, excluded_routes=EXCLUDED)
    assert server(sampler, "/health/ready") is Decision.DROP
    assert server(sampler, "/metrics", parent=remote_parent(True)) is Decision.DROP


def test_critical_routes_always_traced() -> None:
    sampler = RouteAwareSampler(0.0, critical_routes=CRITICAL)
    assert server(sampler, "/api/v1/agents/execute") is Decision.RECORD_AND_SAMPLE
    assert server(sampler, "/api/v1/agents") is Decision.DROP


def test_parent_decides() -> None:
    sampler = RouteAwareSampler(0.0)
    assert server(sampler, "/x", parent=remote_parent(True)) is Decision.RECORD_AND_SAMPLE
    always = RouteAwareSampler(1.0)
    assert server(always, "/x", parent=remote_parent(False)) is Decision.DROP


def test_deferred_parent_is_decided_here() -> None:
    context = set_value(DEFERRED_SAMPLING_KEY, True, remote_parent(False))
    assert server(RouteAwareSampler(1.0), "/x", parent=context) is Decision.RECORD_AND_SAMPLE
    assert server(RouteAwareSampler(0.0), "/x", parent=context) is Decision.DROP


def test_rate_is_applied_to_the_trace_id_deterministically() -> None:
    sampler = RouteAwareSampler(0.1)
    trace_ids = [i * 0x9E3779B97F4A7C15 % (1 << 128) for i in range(1, 5001)]
    decisions = [server(sampler, "/x", trace_id=t) for t in trace_ids]
    share = sum(d is Decision.RECORD_AND_SAMPLE for d in decisions) / len(decisions)
    assert 0.08 < share < 0.12
    again = [server(sampler, "/x", trace_id=t) for t in trace_ids]
    assert decisions == again


def test_user_traces_sampler_gets_route_and_method() -> None:
    seen: list[Mapping[str, Any]] = []

    def traces_sampler(context: Mapping[str, Any]) -> float | None:
        seen.append(context)
        if "/api/v1/reports" in context["transaction"]:
            return 1.0
        return None

    sampler = RouteAwareSampler(0.0, traces_sampler=traces_sampler)
    assert server(sampler, "/api/v1/reports/{report_id}") is Decision.RECORD_AND_SAMPLE
    assert server(sampler, "/api/v1/other") is Decision.DROP
    assert seen[0]["route"] == "/api/v1/reports/{report_id}"
    assert seen[0]["method"] == "GET"


def _provider(sampler: RouteAwareSampler) -> tuple[Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_start_attributes_survive_the_sampler_through_a_real_provider() -> None:
    provider, exporter = _provider(RouteAwareSampler(1.0))
    tracer = provider.get_tracer("t")
    start = {"http.request.method": "GET", "url.full": "https://api.example/v1", "sentry.op": "x"}
    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes=start):
        pass
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == start


def test_critical_route_keeps_start_attributes_and_adds_keep_mark() -> None:
    sampler = RouteAwareSampler(0.0, critical_routes=CRITICAL, mark_critical=True)
    provider, exporter = _provider(sampler)
    start = {"http.route": CRITICAL[0], "http.request.method": "POST"}
    with provider.get_tracer("t").start_as_current_span(
        f"POST {CRITICAL[0]}", kind=SpanKind.SERVER, attributes=start
    ):
        pass
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {**start, "telemetry.keep": True}


def test_parent_trace_state_is_kept_on_children() -> None:
    from opentelemetry.trace.span import TraceState

    provider, exporter = _provider(RouteAwareSampler(1.0))
    parent = SpanContext(
        trace_id=0xABC,
        span_id=0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "value")]),
    )
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    with provider.get_tracer("t").start_as_current_span("child", context=context):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.context.trace_state.get("vendor") == "value"


def test_route_patterns_remember_answers_within_a_bound() -> None:
    from telemetry.tracing.sampling import MAX_REMEMBERED_PATHS, RoutePatterns

    patterns = RoutePatterns(["/health/*", "/metrics"])
    for _ in range(2):  # the second round answers from memory, the same way
        assert patterns.matches("/health")
        assert patterns.matches("/health/live?verbose=1")
        assert patterns.matches("/metrics")
        assert not patterns.matches("/metrics/x")
        assert not patterns.matches("/healthz")
    for i in range(MAX_REMEMBERED_PATHS + 100):
        assert not patterns.matches(f"/items/{i}")
    assert patterns.matches("/health/ready")  # still right once the memory is full
    assert len(patterns._known) == MAX_REMEMBERED_PATHS
