"""The sampling gate: decided once before OpenTelemetry's ASGI middleware, with the same
outcome (trace ids, flags, propagation, exported spans) as letting the middleware decide."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.propagate import get_global_textmap, inject, set_global_textmap
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from telemetry.tracing.gate import PresetIdGenerator, SamplingGate, install_sampling_gate
from telemetry.tracing.sampling import RouteAwareSampler, RoutePatterns

PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"


@pytest.fixture(autouse=True)
def _w3c() -> Iterator[None]:
    previous = get_global_textmap()
    set_global_textmap(TraceContextTextMapPropagator())
    yield
    set_global_textmap(previous)


def _service(rate: float, **sampler: Any) -> tuple[FastAPI, InMemorySpanExporter, list[Any]]:
    provider = TracerProvider(
        sampler=RouteAwareSampler(rate, excluded_routes=["/health/*"], **sampler),
        id_generator=PresetIdGenerator(),
    )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[Any] = []
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, Any]:
        span = trace.get_current_span()
        carrier: dict[str, str] = {}
        inject(carrier)  # what an outgoing call would send
        seen.append((span.get_span_context(), span.is_recording(), carrier))
        return {"id": item_id}

    @app.get("/health/live")
    async def health() -> dict[str, str]:
        seen.append((trace.get_current_span().get_span_context(), None, {}))
        return {"ok": "yes"}

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        exclude_spans=["receive", "send"],
        excluded_urls=RoutePatterns(["/health/*"]).as_url_regexes(),
    )
    assert install_sampling_gate(app, provider)
    return app, exporter, seen


def _gate_in(app: FastAPI) -> bool:
    node = app.build_middleware_stack()
    while node is not None:
        if isinstance(node, SamplingGate):
            return True
        node = getattr(node, "app", None)
    return False


def test_an_unsampled_request_skips_the_span_but_keeps_its_trace() -> None:
    app, exporter, seen = _service(0.0)
    assert _gate_in(app)
    with TestClient(app) as client:
        assert client.get("/items/1").status_code == 200
    ctx, recording, carrier = seen[0]
    assert ctx.is_valid and not ctx.trace_flags.sampled and recording is False
    # Outgoing calls still carry the trace, with the not-sampled flag.
    # (flags 02: not sampled, random trace id, exactly what the SDK sends for a dropped span)
    assert carrier["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-02"
    assert ctx.trace_flags == 0x02  # the SDK's flags for a dropped root: random trace id
    assert exporter.get_finished_spans() == ()


def test_an_unsampled_parent_is_continued_not_sampled() -> None:
    app, exporter, seen = _service(1.0)
    with TestClient(app) as client:
        client.get("/items/1", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-00"})
    ctx, recording, carrier = seen[0]
    assert f"{ctx.trace_id:032x}" == PARENT_TRACE and not recording
    assert f"{ctx.span_id:016x}" != PARENT_SPAN
    assert carrier["traceparent"].startswith(f"00-{PARENT_TRACE}-") and carrier[
        "traceparent"
    ].endswith("-00")  # the parent's flags: not sampled, no random-id flag
    assert exporter.get_finished_spans() == ()


def test_a_sampled_parent_goes_through_otel_with_its_trace() -> None:
    app, exporter, seen = _service(0.0)
    with TestClient(app) as client:
        client.get("/items/7", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"})
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /items/{item_id}"
    assert span.attributes is not None and span.attributes["http.route"] == "/items/{item_id}"
    assert f"{span.context.trace_id:032x}" == PARENT_TRACE
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_SPAN
    assert seen[0][1] is True


def test_new_traces_are_decided_on_the_trace_id_they_get() -> None:
    """The gate decides on a trace id before the span exists; a sampled span carries exactly
    that id, so the decision is the sampler's rule applied to the span's own trace id."""
    app, exporter, seen = _service(0.5)
    with TestClient(app) as client:
        for i in range(60):
            assert client.get(f"/items/{i}").status_code == 200
    sampled = {ctx.trace_id for ctx, recording, _ in seen if recording}
    unsampled = {ctx.trace_id for ctx, recording, _ in seen if not recording}
    assert sampled and unsampled
    limit = 1 << 63  # rate 0.5 of the low 64 bits
    assert all((t & ((1 << 64) - 1)) < limit for t in sampled)
    assert all((t & ((1 << 64) - 1)) >= limit for t in unsampled)
    assert {s.context.trace_id for s in exporter.get_finished_spans()} == sampled


def test_excluded_routes_and_user_samplers_take_the_middleware_path() -> None:
    app, exporter, seen = _service(1.0)
    with TestClient(app) as client:
        client.get("/health/live")
    assert not seen[0][0].is_valid  # OTel's URL exclusion: no span, no context at all
    assert exporter.get_finished_spans() == ()

    calls: list[dict[str, Any]] = []

    def sampler(ctx: dict[str, Any]) -> float:
        calls.append(ctx)
        return 1.0

    app, exporter, _ = _service(0.0, traces_sampler=sampler)
    with TestClient(app) as client:
        client.get("/items/3")
    # The user's sampler saw the middleware's full start attributes.
    assert "http.target" in calls[0]["attributes"] or "url.path" in calls[0]["attributes"]
    assert calls[0]["route"] == "/items/{item_id}"
    assert len(exporter.get_finished_spans()) == 1


def test_preset_trace_id_is_taken_once() -> None:
    from telemetry.tracing import gate

    ids = PresetIdGenerator()
    token = gate._PRESET_TRACE_ID.set(42)
    try:
        assert ids.generate_trace_id() == 42
        assert ids.generate_trace_id() != 42
    finally:
        gate._PRESET_TRACE_ID.reset(token)


def test_not_installed_without_the_bridge_sampler() -> None:
    app = FastAPI()
    assert not install_sampling_gate(app, TracerProvider())


def test_routes_are_remembered_per_path_and_routes_added_later_are_seen() -> None:
    app, exporter, _ = _service(1.0)
    with TestClient(app) as client:
        client.get("/items/1")
        client.get("/items/1")
        client.get("/items/2")
        client.get("/later")  # no such route yet: a 404, span named by the method only

        @app.get("/later")
        async def later() -> dict[str, str]:
            return {}

        client.get("/later")
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["GET /items/{item_id}"] * 3 + ["GET", "GET /later"]


def test_statements_of_an_unsampled_request_skip_the_span_work() -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from sqlalchemy import create_engine, text

    from telemetry.tracing.gate import skip_unsampled_statements

    assert skip_unsampled_statements()
    assert skip_unsampled_statements()  # idempotent
    sampler = RouteAwareSampler(1.0)
    decisions: list[str] = []
    decide = sampler.should_sample

    def counting_should_sample(*args: Any, **kwargs: Any) -> Any:
        decisions.append(args[2])  # the span name
        return decide(*args, **kwargs)

    sampler.should_sample = counting_should_sample  # type: ignore[method-assign]
    provider = TracerProvider(sampler=sampler, id_generator=PresetIdGenerator())
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    engine = create_engine("sqlite://")
    instrumentor = SQLAlchemyInstrumentor()
    instrumentor.instrument(engines=[engine], tracer_provider=provider)
    try:
        tracer = provider.get_tracer("test")
        unsampled = trace.NonRecordingSpan(
            trace.SpanContext(1, 2, is_remote=False, trace_flags=trace.TraceFlags(0))
        )
        with trace.use_span(unsampled), engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        # Neither the connection nor the statement started a span for the sampler to drop.
        assert decisions == []
        assert exporter.get_finished_spans() == ()
        with tracer.start_as_current_span("request"), engine.connect() as conn:
            conn.execute(text("SELECT 2"))
        names = [s.name for s in exporter.get_finished_spans()]
        assert sorted(names) == ["SELECT", "connect", "request"]
        db = next(s for s in exporter.get_finished_spans() if s.name == "SELECT")
        assert db.attributes is not None and db.attributes.get("db.statement") == "SELECT 2"
    finally:
        instrumentor.uninstrument()


def test_with_the_bridge_propagator_parents_are_found_and_headerless_requests_skip_it() -> None:
    from telemetry.tracing.propagation import build_propagator

    set_global_textmap(build_propagator(None, None))  # the autouse fixture restores it
    app, exporter, seen = _service(1.0)
    with TestClient(app) as client:
        client.get("/items/1", headers={"sentry-trace": f"{PARENT_TRACE}-{PARENT_SPAN}-0"})
        client.get("/items/2", headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-00"})
        client.get("/items/3")  # no propagation header: a new, sampled trace
    for ctx, recording, _ in seen[:2]:
        assert f"{ctx.trace_id:032x}" == PARENT_TRACE and recording is False
    ctx, recording, carrier = seen[2]
    assert f"{ctx.trace_id:032x}" != PARENT_TRACE and recording is True
    assert carrier["sentry-trace"].startswith(f"{ctx.trace_id:032x}-")
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /items/{item_id}"]
