"""Request metrics, exemplars, /metrics negotiation and the cardinality guard, on a real FastAPI
app with a real OTel TracerProvider (dependency metrics: tests/integration/)."""

from __future__ import annotations

import os
import random
import string
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import StreamingResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler
from opentelemetry.trace import SpanKind
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Exemplar
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from telemetry.metrics import TelemetryMetrics, request_buckets
from telemetry.metrics.cardinality import OVERFLOW, UNMATCHED, sql_operation
from telemetry.metrics.multiprocess import ExemplarStore, bucket_bound, sample_key

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def build_app(metrics: TelemetryMetrics, sampler: Sampler | None = None) -> tuple[FastAPI, Any]:
    app = FastAPI()
    agents = APIRouter(prefix="/agents")

    @agents.get("/{agent_id}")
    async def get_agent(agent_id: str) -> dict[str, str]:
        return {"agent": agent_id}

    app.include_router(agents, prefix="/api/v1")

    @app.get("/items/{item_id:int}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/in-progress")
    async def in_progress() -> dict[str, float | None]:
        value = metrics.registry.get_sample_value(
            "http_server_requests_in_progress", {"service": "svc", "method": "GET"}
        )
        return {"value": value}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"a", b"b", b"c"):
                yield part

        return StreamingResponse(chunks())

    sub = Starlette(routes=[Route("/x/{y}", lambda _: PlainTextResponse("ok"))])
    app.mount("/tenants/{tenant}", sub)
    metrics.install(app)
    exporter = InMemorySpanExporter()
    if sampler is not None:
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=["send"])
    return app, exporter


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def requests_total(metrics: TelemetryMetrics, route: str, status: str, method: str = "GET") -> Any:
    labels = {"service": "svc", "method": method, "route": route, "status_code": status}
    return metrics.registry.get_sample_value("http_server_requests_total", labels)


def series(metrics: TelemetryMetrics, name: str) -> int:
    return sum(1 for family in metrics.registry.collect() for s in family.samples if s.name == name)


def openmetrics_samples(body: str, name: str) -> list[Any]:
    return [s for f in text_string_to_metric_families(body) for s in f.samples if s.name == name]


@pytest.mark.anyio
async def test_route_label_is_the_template_and_unmatched_paths_share_one() -> None:
    metrics = TelemetryMetrics("svc")
    app, _ = build_app(metrics)
    async with client(app) as c:
        for path in ("/api/v1/agents/7", "/api/v1/agents/8", "/items/3", "/tenants/acme/x/1"):
            assert (await c.get(path)).status_code == 200
        assert (await c.get("/items/not-an-int")).status_code == 404
        assert (await c.get("/no/such/path")).status_code == 404
        assert (await c.post("/items/3")).status_code == 405
    assert requests_total(metrics, "/api/v1/agents/{agent_id}", "200") == 2
    assert requests_total(metrics, "/items/{item_id:int}", "200") == 1
    assert requests_total(metrics, "/tenants/{tenant}/x/{y}", "200") == 1
    assert requests_total(metrics, UNMATCHED, "404") == 2
    assert requests_total(metrics, "/items/{item_id:int}", "405", method="POST") == 1
    # The scrapes themselves are never counted.
    async with client(app) as c:
        await c.get("/metrics")
    assert "/metrics" not in (await _text(app))


async def _text(app: Any, accept: str | None = None) -> str:
    async with client(app) as c:
        response = await c.get("/metrics", headers={"accept": accept} if accept else {})
    assert response.status_code == 200
    return response.text


@pytest.mark.anyio
async def test_exemplars_carry_the_sampled_server_span_ids() -> None:
    metrics = TelemetryMetrics("svc")
    app, exporter = build_app(metrics, ALWAYS_ON)
    async with client(app) as c:
        assert (await c.get("/api/v1/agents/7")).status_code == 200
    server = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(server) == 1
    expected = {
        "trace_id": format(server[0].context.trace_id, "032x"),
        "span_id": format(server[0].context.span_id, "016x"),
    }
    body = await _text(app, OPENMETRICS)
    (total,) = [
        s
        for s in openmetrics_samples(body, "http_server_requests_total")
        if s.labels["route"] == "/api/v1/agents/{agent_id}"
    ]
    assert total.exemplar is not None and total.exemplar.labels == expected
    buckets = [
        s
        for s in openmetrics_samples(body, "http_server_request_duration_seconds_bucket")
        if s.exemplar is not None
    ]
    assert [b.exemplar.labels for b in buckets] == [expected]


@pytest.mark.anyio
async def test_no_exemplar_for_unsampled_requests() -> None:
    metrics = TelemetryMetrics("svc")
    app, exporter = build_app(metrics, ALWAYS_OFF)
    async with client(app) as c:
        assert (await c.get("/api/v1/agents/7")).status_code == 200
    assert exporter.get_finished_spans() == ()
    body = await _text(app, OPENMETRICS)
    assert requests_total(metrics, "/api/v1/agents/{agent_id}", "200") == 1
    assert "# {" not in body
    assert all(
        s.exemplar is None
        for name in ("http_server_requests_total", "http_server_request_duration_seconds_bucket")
        for s in openmetrics_samples(body, name)
    )


@pytest.mark.anyio
async def test_metrics_endpoint_negotiates_openmetrics_or_text() -> None:
    app, _ = build_app(TelemetryMetrics("svc"), ALWAYS_ON)
    async with client(app) as c:
        await c.get("/items/1")
        prometheus_accept = f"{OPENMETRICS};q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
        om = await c.get("/metrics", headers={"accept": prometheus_accept})
        text = await c.get("/metrics")
        head = await c.head("/metrics")
        post = await c.post("/metrics")
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n") and "# {span_id=" in om.text
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in text.text and "# {" not in text.text
    assert 'http_server_requests_total{method="GET",route="/items/{item_id:int}"' in text.text
    # The default registry is served too: the application's own metrics, process metrics.
    assert "process_cpu_seconds_total" in text.text
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"


@pytest.mark.anyio
async def test_unhandled_exception_is_counted_and_reraised() -> None:
    metrics = TelemetryMetrics("svc")
    app, _ = build_app(metrics)
    transport = httpx.ASGITransport(app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        with pytest.raises(RuntimeError, match="boom"):
            await c.get("/boom")
    assert requests_total(metrics, "/boom", "500") == 1
    labels = {"service": "svc", "method": "GET", "route": "/boom", "exception_type": "RuntimeError"}
    assert metrics.registry.get_sample_value("http_server_exceptions_total", labels) == 1


@pytest.mark.anyio
async def test_in_progress_gauge_and_streaming() -> None:
    metrics = TelemetryMetrics("svc")
    app, _ = build_app(metrics)
    async with client(app) as c:
        assert (await c.get("/in-progress")).json() == {"value": 1.0}
        assert (await c.get("/stream")).content == b"abc"
    gauge = {"service": "svc", "method": "GET"}
    assert metrics.registry.get_sample_value("http_server_requests_in_progress", gauge) == 0
    assert requests_total(metrics, "/stream", "200") == 1


@pytest.mark.anyio
async def test_pure_asgi_app_keeps_every_streamed_chunk() -> None:
    metrics = TelemetryMetrics("svc")

    async def raw_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        for part in (b"1", b"2"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "BREW", "path": "/raw", "headers": [], "root_path": ""}
    await metrics.asgi(raw_app)(scope, receive, send)
    assert [m.get("body") for m in sent] == [None, b"1", b"2", b""]
    # No router, no route: unmatched; an invented method is folded into OTHER.
    assert requests_total(metrics, UNMATCHED, "201", method="OTHER") == 1


@pytest.mark.anyio
async def test_ten_thousand_random_paths_add_a_constant_number_of_series() -> None:
    metrics = TelemetryMetrics("svc")
    app, _ = build_app(metrics)
    rng = random.Random(1234)

    def word() -> str:
        return "".join(rng.choices(string.ascii_lowercase + string.digits, k=12))

    statuses: list[int] = []

    async def call(method: str, path: str, query: str = "") -> None:
        # Straight into the ASGI app: an HTTP client per request would make this test slow
        # without exercising anything more of the middleware.
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "", "headers": [],
            "server": ("test", 80), "client": ("127.0.0.1", 1234),
        }  # fmt: skip

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)

    for _ in range(20):
        await call("GET", f"/{word()}/{word()}")
        await call("GET", f"/api/v1/agents/{word()}")
    before = series(metrics, "http_server_requests_total")
    for i in range(10_000):
        if i % 2:
            await call("GET", f"/{word()}/{word()}", f"q={word()}")
        else:
            await call(rng.choice(["GET", "PURGE", "FOO"]), f"/api/v1/agents/{word()}")
    assert len(statuses) == 10_040 and set(statuses) == {200, 404, 405}
    after = series(metrics, "http_server_requests_total")
    # unmatched 404, the agents route as GET 200 and as OTHER 405: three series, whatever
    # the paths were.
    assert before == 2 and after == 3
    assert series(metrics, "http_server_request_duration_seconds_count") == after
    overflowed = sum(
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "telemetry_metric_label_overflow_total"
    )
    assert overflowed == 0


@pytest.mark.anyio
async def test_label_past_its_bound_becomes_overflow_and_is_counted() -> None:
    metrics = TelemetryMetrics("svc", label_limits={"route": 2})
    app, _ = build_app(metrics)
    async with client(app) as c:
        for path in ("/api/v1/agents/1", "/items/1", "/stream", "/tenants/t/x/1", "/boom"):
            await c.get(path)
    assert requests_total(metrics, "/api/v1/agents/{agent_id}", "200") == 1
    assert requests_total(metrics, "/items/{item_id:int}", "200") == 1
    assert requests_total(metrics, OVERFLOW, "200") == 2
    assert requests_total(metrics, OVERFLOW, "500") == 1
    overflow = {"metric": "http_server_requests_total", "label": "route"}
    assert metrics.registry.get_sample_value("telemetry_metric_label_overflow_total", overflow) == 3


def test_buckets_contain_apdex_thresholds_and_build_info_is_one() -> None:
    assert {0.5, 2.0} <= set(request_buckets())
    assert {0.3, 1.2} <= set(request_buckets(0.3))
    with pytest.raises(ValueError):
        request_buckets(0)
    metrics = TelemetryMetrics("svc", "1.2.3", "staging", apdex_threshold_s=0.3)
    metrics.record_request("GET", "/r", "200", 1.0)
    bucket = {"service": "svc", "method": "GET", "route": "/r", "status_code": "200"}
    get = metrics.registry.get_sample_value
    assert get("http_server_request_duration_seconds_bucket", {**bucket, "le": "1.2"}) == 1
    assert get("http_server_request_duration_seconds_bucket", {**bucket, "le": "0.3"}) == 0
    info = {"service": "svc", "version": "1.2.3", "environment": "staging", "release": "svc@1.2.3"}
    assert get("service_build_info", info) == 1


def test_pipeline_metrics() -> None:
    metrics = TelemetryMetrics("svc")
    pipeline = metrics.pipeline
    pipeline.spans_exported("jaeger", 5)
    pipeline.spans_failed("sentry", 2)
    pipeline.spans_dropped("jaeger")
    pipeline.sentry_event_sent("error")
    pipeline.sentry_event_dropped("transaction", "queue_overflow", 3)
    get = metrics.registry.get_sample_value
    assert get("telemetry_spans_exported_total", {"sink": "jaeger"}) == 5
    assert get("telemetry_spans_failed_total", {"sink": "sentry"}) == 2
    assert get("telemetry_spans_dropped_total", {"sink": "jaeger"}) == 1
    assert get("telemetry_sentry_events_sent_total", {"kind": "error"}) == 1
    dropped = {"kind": "transaction", "reason": "queue_overflow"}
    assert get("telemetry_sentry_events_dropped_total", dropped) == 3


def test_install_is_idempotent_and_refuses_a_second_instance() -> None:
    metrics = TelemetryMetrics("svc")
    app = FastAPI()
    metrics.install(app)
    metrics.install(app)
    assert len(app.user_middleware) == 1
    with pytest.raises(RuntimeError, match="already installed"):
        TelemetryMetrics("svc").install(app)


def test_sql_operation_and_bucket_bound() -> None:
    assert sql_operation("/* app=x */ -- note\n  select 1") == "SELECT"
    assert sql_operation("WITH t AS (SELECT 1) SELECT * FROM t") == "WITH"
    assert sql_operation("  (select 1)") == "OTHER"
    assert bucket_bound((0.1, 0.5), 0.1) == "0.1" and bucket_bound((0.1,), 3.0) == "+Inf"


def test_exemplar_store_shares_the_newest_exemplar_between_workers(tmp_path: Any) -> None:
    key = sample_key("http_server_requests_total", {"route": "/r"})
    sibling = ExemplarStore(str(tmp_path), flush_interval_s=60)
    sibling.record(key, Exemplar({"trace_id": "a" * 32}, 1.0, 10.0))
    sibling.close()  # the last flush writes telemetry_exemplars_<pid>.json
    # Give the file a sibling worker's pid: a store never reads its own file back.
    written = tmp_path / f"telemetry_exemplars_{os.getpid()}.json"
    written.rename(tmp_path / "telemetry_exemplars_999999999.json")

    store = ExemplarStore(str(tmp_path), flush_interval_s=60)
    assert store.merged()[key].labels == {"trace_id": "a" * 32}
    store.record(key, Exemplar({"trace_id": "b" * 32}, 1.0, 20.0))
    assert store.merged()[key].labels == {"trace_id": "b" * 32}
    store.record(key, Exemplar({"trace_id": "c" * 32}, 1.0, 5.0))
    assert store.merged()[key].labels == {"trace_id": "a" * 32}  # newest wins, not last read
    store.close()
