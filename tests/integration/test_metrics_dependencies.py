"""Dependency metrics: every httpx call, SQL statement and redis command is measured, sampled
or not, against the real PostgreSQL and Redis of the machine and a real local HTTP server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from telemetry.metrics import TelemetryMetrics


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def off_provider() -> TracerProvider:
    return TracerProvider(sampler=ALWAYS_OFF)


@pytest.fixture
def deps() -> Iterator[TelemetryMetrics]:
    metrics = TelemetryMetrics("svc")
    assert metrics.instrument_dependencies() == ["httpx", "sqlalchemy", "redis"]
    yield metrics
    metrics.close()


def db_count(metrics: TelemetryMetrics, system: str, operation: str) -> float | None:
    labels = {"service": "svc", "system": system, "operation": operation}
    return metrics.registry.get_sample_value("db_client_operation_duration_seconds_count", labels)


def client_count(metrics: TelemetryMetrics, peer: str, status: str, method: str = "GET") -> Any:
    labels = {"service": "svc", "method": method, "peer": peer, "status_code": status}
    return metrics.registry.get_sample_value("http_client_request_duration_seconds_count", labels)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 503 if self.path == "/fail" else 200
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.anyio
async def test_httpx_calls_are_all_counted(deps: TelemetryMetrics, http_server: str) -> None:
    HTTPXClientInstrumentor().instrument(tracer_provider=off_provider())
    try:
        with httpx.Client() as sync_client:
            sync_client.get(f"http://{http_server}/a")
            sync_client.get(f"http://{http_server}/fail")
        async with httpx.AsyncClient() as async_client:
            await async_client.get(f"http://{http_server}/b")
            closed = f"127.0.0.1:{free_port()}"
            with pytest.raises(httpx.ConnectError):
                await async_client.get(f"http://{closed}/")
    finally:
        HTTPXClientInstrumentor().uninstrument()
    assert client_count(deps, http_server, "200") == 2
    assert client_count(deps, http_server, "503") == 1
    assert client_count(deps, closed, "error") == 1
    # OTel's uninstrument removed its own wrapper and left ours in place.
    assert getattr(httpx.HTTPTransport.handle_request, "_telemetry_dependency_metrics", False)
    with httpx.Client() as sync_client:
        sync_client.get(f"http://{http_server}/c")
    assert client_count(deps, http_server, "200") == 3


def test_dependency_histograms_carry_exemplars_of_sampled_spans(
    deps: TelemetryMetrics, http_server: str
) -> None:
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    with tracer.start_as_current_span("parent") as span, httpx.Client() as sync_client:
        sync_client.get(f"http://{http_server}/a")
    exemplars = [
        s.exemplar.labels
        for family in deps.registry.collect()
        for s in family.samples
        if s.name == "http_client_request_duration_seconds_bucket" and s.exemplar
    ]
    assert exemplars == [
        {
            "trace_id": format(span.get_span_context().trace_id, "032x"),
            "span_id": format(span.get_span_context().span_id, "016x"),
        }
    ]


def test_sqlalchemy_statements_are_all_counted_on_postgresql(
    deps: TelemetryMetrics, postgres_url: str
) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(tracer_provider=off_provider())
    # An engine made before instrumentation is covered too: the listeners sit on the class.
    sqlite = sa.create_engine("sqlite://")
    try:
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TEMP TABLE t (x int)"))
            conn.execute(sa.text("INSERT INTO t VALUES (1), (2)"))
            for _ in range(3):
                conn.execute(sa.text("/* c */ SELECT x FROM t"))
        with pytest.raises(sa.exc.ProgrammingError), engine.connect() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table"))
        engine.dispose()
        with sqlite.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        SQLAlchemyInstrumentor().uninstrument()
    assert db_count(deps, "postgresql", "CREATE") == 1
    assert db_count(deps, "postgresql", "INSERT") == 1
    # Three selects, the failing one, and the ones the dialect issues on first connect.
    assert (db_count(deps, "postgresql", "SELECT") or 0) >= 4
    assert db_count(deps, "sqlite", "SELECT") == 1


@pytest.mark.anyio
async def test_redis_commands_and_pipelines_are_all_counted(
    deps: TelemetryMetrics, redis_url: str
) -> None:
    RedisInstrumentor().instrument(tracer_provider=off_provider())
    try:
        sync_redis = redis.Redis.from_url(redis_url)
        sync_redis.set("telemetry:test", "1")
        sync_redis.get("telemetry:test")
        with sync_redis.pipeline(transaction=True) as pipe:
            pipe.incr("telemetry:test").get("telemetry:test").execute()
        with pytest.raises(redis.ResponseError):
            sync_redis.execute_command("NOSUCHCOMMAND")
        sync_redis.close()
        async_redis = redis.asyncio.Redis.from_url(redis_url)
        await async_redis.get("telemetry:test")
        async with async_redis.pipeline(transaction=False) as apipe:
            await apipe.get("telemetry:test").get("telemetry:test").execute()
        await async_redis.delete("telemetry:test")
        await async_redis.aclose()  # type: ignore[attr-defined]  # types-redis predates it
    finally:
        RedisInstrumentor().uninstrument()
    assert db_count(deps, "redis", "SET") == 1
    assert db_count(deps, "redis", "GET") == 2
    assert db_count(deps, "redis", "MULTI") == 1
    assert db_count(deps, "redis", "PIPELINE") == 1
    assert db_count(deps, "redis", "NOSUCHCOMMAND") == 1
    assert db_count(deps, "redis", "DEL") == 1


def test_dependency_wrappers_sit_below_otel_whatever_the_order(deps: TelemetryMetrics) -> None:
    import wrapt
    from opentelemetry.instrumentation.utils import unwrap

    from telemetry.metrics.dependencies import _patch, _sync_timed

    class Client:
        def call(self, value: int) -> int:
            return value

    calls: list[float] = []

    def otel_like(wrapped: Any, _instance: Any, args: Any, kwargs: Any) -> int:
        return int(wrapped(*args, **kwargs)) + 100

    # The instrumentor wrapped first, ours second: ours still goes underneath.
    wrapt.wrap_function_wrapper(Client, "call", otel_like)
    _patch(Client, "call", _sync_timed(lambda *args: calls.append(args[-1])))
    _patch(Client, "call", _sync_timed(lambda *args: calls.append(args[-1])))  # idempotent
    assert Client().call(1) == 101 and len(calls) == 1
    unwrap(Client, "call")  # what the instrumentor's uninstrument does
    assert Client().call(1) == 1 and len(calls) == 2
