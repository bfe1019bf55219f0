"""The demo service, its load generator and the one-command local run."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from demo import loadgen, report
from demo.app import create_app, llm_client
from demo.config import BUILTIN_API_KEYS, DemoConfig, Principal, async_database_url, parse_api_keys
from fastapi import FastAPI
from starlette.testclient import TestClient

from telemetry import TelemetrySettings
from telemetry.file_sinks import OTLPJsonFileSpanExporter
from telemetry.settings import load_settings
from tests.support.net import poll_until

ACME, GLOBEX = list(BUILTIN_API_KEYS)
ROOT = Path(__file__).resolve().parents[1]


def demo_config(tmp_path: Path, provider_url: str = "http://127.0.0.1:9") -> DemoConfig:
    return DemoConfig(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'agents.db'}",
        redis_url=None,
        model_provider_url=provider_url,
        api_keys={key: Principal(*value) for key, value in BUILTIN_API_KEYS.items()},
    )


@pytest.fixture
def sinks(tmp_path: Path) -> Path:
    out = tmp_path / "sinks"
    out.mkdir()
    return out


@pytest.fixture
def demo_app(tmp_path: Path, sinks: Path) -> Iterator[FastAPI]:
    """The demo API in staging with file sinks: every integration on, nothing on the network."""
    settings = staging(sinks)
    app = create_app(settings, demo_config(tmp_path))
    try:
        yield app
    finally:
        app.state.telemetry.shutdown()


@pytest.fixture
def client(demo_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(demo_app, raise_server_exceptions=False) as test_client:
        yield test_client


def staging(sinks: Path) -> TelemetrySettings:
    """Every integration on, every sink a file: nothing leaves the machine."""
    return load_settings(environment="staging", file_sink_dir=sinks)


def as_user(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def test_requests_without_a_valid_key_are_refused(client: TestClient) -> None:
    missing = client.get("/api/v1/agents")
    assert missing.status_code == 401
    assert missing.json() == {"detail": "missing API key"}
    assert missing.headers["www-authenticate"].startswith("ApiKey")
    assert client.get("/api/v1/agents", headers=as_user("nope")).json() == {
        "detail": "invalid API key"
    }
    assert client.get("/api/v1/agents", headers=as_user(ACME)).status_code == 200


def test_agents_crud_is_tenant_scoped(client: TestClient) -> None:
    created = client.post(
        "/api/v1/agents", json={"name": "triage", "model": "gpt-4o-mini"}, headers=as_user(ACME)
    )
    assert created.status_code == 201
    agent = created.json()
    assert (agent["tenant_id"], agent["name"], agent["executions"]) == ("acme", "triage", 0)
    url = f"/api/v1/agents/{agent['id']}"

    assert client.get(url, headers=as_user(ACME)).json() == agent
    assert client.get(url, headers=as_user(GLOBEX)).status_code == 404
    listed = client.get("/api/v1/agents", headers=as_user(ACME)).json()
    assert [item["id"] for item in listed["items"]] == [agent["id"]]
    assert client.get("/api/v1/agents", headers=as_user(GLOBEX)).json()["items"] == []

    patched = client.patch(url, json={"instructions": "be brief"}, headers=as_user(ACME))
    assert patched.json()["instructions"] == "be brief"
    assert client.get(url, headers=as_user(ACME)).json()["instructions"] == "be brief"

    assert client.delete(url, headers=as_user(ACME)).status_code == 204
    assert client.get(url, headers=as_user(ACME)).status_code == 404
    assert client.delete(url, headers=as_user(ACME)).status_code == 404


def test_client_errors(client: TestClient) -> None:
    missing = client.get("/api/v1/agents/424242", headers=as_user(ACME))
    assert missing.status_code == 404
    assert missing.json() == {"detail": "agent 424242 not found"}
    invalid = client.post("/api/v1/agents", json={"name": "", "model": "x"}, headers=as_user(ACME))
    assert invalid.status_code == 422
    assert {error["loc"][-1] for error in invalid.json()["detail"]} == {"name", "model"}
    unknown_agent = client.post(
        "/api/v1/agents/execute", json={"agent_id": 999, "input": "hi"}, headers=as_user(ACME)
    )
    assert unknown_agent.status_code == 404


def test_health_probes(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "disabled"}


def test_ready_reports_an_unreachable_redis(tmp_path: Path, sinks: Path) -> None:
    config = replace(demo_config(tmp_path), redis_url="redis://127.0.0.1:1/0")
    app = create_app(staging(sinks), config)
    try:
        with TestClient(app) as test_client:
            ready = test_client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json()["checks"]["redis"].startswith("error")
            # The cache degrades to misses: reads still work without Redis.
            created = test_client.post(
                "/api/v1/agents", json={"name": "a"}, headers=as_user(ACME)
            ).json()
            got = test_client.get(f"/api/v1/agents/{created['id']}", headers=as_user(ACME))
            assert got.status_code == 200
    finally:
        app.state.telemetry.shutdown()


POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/15"


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(
    not (reachable("127.0.0.1", 5432) and reachable("127.0.0.1", 6379)),
    reason="needs the PostgreSQL and Redis of the development machine",
)
def test_postgres_with_redis_cache_are_traced(tmp_path: Path, sinks: Path) -> None:
    import redis

    config = replace(demo_config(tmp_path), database_url=POSTGRES_URL, redis_url=REDIS_URL)
    cache = redis.Redis.from_url(REDIS_URL)
    app = create_app(staging(sinks), config)
    try:
        with TestClient(app) as test_client:
            ready = test_client.get("/health/ready").json()
            assert ready["checks"] == {"database": "ok", "redis": "ok"}
            agent = test_client.post(
                "/api/v1/agents", json={"name": "pg"}, headers=as_user(ACME)
            ).json()
            key = f"agent:acme:{agent['id']}"
            cache.delete(key)
            url = f"/api/v1/agents/{agent['id']}"
            assert test_client.get(url, headers=as_user(ACME)).json()["name"] == "pg"
            assert json.loads(cache.get(key) or b"{}")["name"] == "pg"  # filled on the read
            test_client.patch(url, json={"name": "pg2"}, headers=as_user(ACME))
            assert cache.get(key) is None  # invalidated by the write
            assert test_client.get(url, headers=as_user(ACME)).json()["name"] == "pg2"
            test_client.delete(url, headers=as_user(ACME))
    finally:
        app.state.telemetry.shutdown()
        cache.close()
    systems = {
        attr["value"].get("stringValue")
        for request in report.read_json_lines(sinks / "spans.otlp.jsonl")
        for rs in request["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
        for attr in span.get("attributes", [])
        if attr["key"] in ("db.system", "db.system.name")
    }
    assert {"postgresql", "redis"} <= systems


def test_debug_endpoints(client: TestClient) -> None:
    assert client.get("/api/v1/debug/slow", params={"ms": 5}).status_code == 401
    assert client.get("/api/v1/debug/slow", params={"ms": 5}, headers=as_user(ACME)).json() == {
        "slept_ms": 5
    }
    handled = client.post("/api/v1/debug/handled", json={"quota": "ten"}, headers=as_user(ACME))
    assert handled.json() == {"quota": 100, "handled": True}
    assert client.get("/api/v1/debug/crash", headers=as_user(ACME)).status_code == 500


def test_execute_reports_an_unreachable_provider_as_a_server_error(client: TestClient) -> None:
    agent = client.post("/api/v1/agents", json={"name": "a"}, headers=as_user(ACME)).json()
    response = client.post(
        "/api/v1/agents/execute",
        json={"agent_id": agent["id"], "input": "hello"},
        headers=as_user(ACME),
    )
    assert response.status_code == 500


def sentry_events(sinks: Path) -> list[dict[str, Any]]:
    return [
        line["payload"]
        for line in report.read_json_lines(sinks / "sentry-events.jsonl")
        if line["type"] == "event"
    ]


def test_errors_carry_user_and_tenant_but_never_the_key(demo_app: FastAPI, sinks: Path) -> None:
    with TestClient(demo_app, raise_server_exceptions=False) as test_client:
        test_client.get("/api/v1/debug/crash", headers=as_user(GLOBEX))
        test_client.post("/api/v1/debug/handled", json={"quota": "x"}, headers=as_user(ACME))
    # The lifespan has ended: the pipeline flushed every sink.
    events = sentry_events(sinks)
    crash = next(e for e in events if e["exception"]["values"][-1]["type"] == "DemoCrash")
    assert crash["user"]["id"] == "u-2002"
    assert crash["tags"]["tenant"] == "globex"
    assert crash["environment"] == "staging"
    handled = next(e for e in events if e["exception"]["values"][-1]["type"] == "ValueError")
    assert handled["user"]["id"] == "u-1001"
    assert "parse_quota" in json.dumps(handled)
    for path in sinks.iterdir():
        content = path.read_text()
        assert ACME not in content and GLOBEX not in content, f"an API key leaked to {path.name}"


def test_execute_crosses_into_the_model_provider(tmp_path: Path, sinks: Path) -> None:
    from demo import model_provider

    settings = staging(sinks)
    app = create_app(settings, demo_config(tmp_path, "http://provider"))
    provider_app = model_provider.create_app(settings)
    try:
        with TestClient(app, raise_server_exceptions=False) as test_client:
            # The provider runs in-process behind an ASGI transport: same client code path.
            app.state.services.provider = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=provider_app), base_url="http://provider"
            )
            app.state.services.llm = llm_client(
                app.state.services.config, transport=httpx2.ASGITransport(app=provider_app)
            )
            agent = test_client.post(
                "/api/v1/agents", json={"name": "a", "model": "llama-3-8b"}, headers=as_user(ACME)
            ).json()
            body = {"agent_id": agent["id"], "input": "plan the week"}
            ok = test_client.post("/api/v1/agents/execute", json=body, headers=as_user(ACME))
            assert ok.status_code == 200
            assert ok.json()["usage"]["completion_tokens"] > 0
            failed = test_client.post(
                "/api/v1/agents/execute",
                json={**body, "simulate": "provider_unavailable"},
                headers=as_user(ACME),
            )
            assert failed.status_code == 500
            # The background task recorded the successful execution after the response.
            poll_until(
                lambda: test_client.get(
                    f"/api/v1/agents/{agent['id']}", headers=as_user(ACME)
                ).json()["executions"]
                == 1,
                5,
                describe="the background task's execution record",
            )
    finally:
        app.state.telemetry.shutdown()
    error = next(
        e
        for e in sentry_events(sinks)
        if e["exception"]["values"][-1]["type"] == "ModelProviderUnavailable"
    )
    requests = report.read_json_lines(sinks / "spans.otlp.jsonl")
    failed_trace = report.spans_of_trace(requests, error["contexts"]["trace"]["trace_id"])
    assert {
        "agent.execute", "load agent", "invoke_agent a", "chat llama-3-8b",
        "POST /v1/chat/completions",
    } <= {row.name for row in failed_trace}  # fmt: skip
    # The background task's span is in its request's trace and ends after the response.
    audit_trace = next(
        span["traceId"]
        for request in requests
        for rs in request["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
        if span["name"] == "record execution"
    )
    rows = {row.name: row for row in report.spans_of_trace(requests, audit_trace)}
    server = rows["POST /api/v1/agents/execute"]
    assert rows["record execution"].end_ns > server.end_ns
    # The agent: invoke_agent -> chat -> execute_tool -> chat, the provider under each chat.
    agent_row = rows["invoke_agent a"]
    assert rows["execute_tool agent_profile"].parent_id == agent_row.span_id
    chats = [
        row for row in report.spans_of_trace(requests, audit_trace) if row.name == "chat llama-3-8b"
    ]
    assert len(chats) == 2 and all(row.parent_id == agent_row.span_id for row in chats)
    assert all(row.tokens and row.tokens.startswith("tokens in=") for row in chats)
    provider_parents = {
        row.parent_id
        for row in report.spans_of_trace(requests, audit_trace)
        # In-process the provider's span is INTERNAL (a span is already current); across
        # processes it is the provider's server span (test_demo_e2e).
        if row.name == "POST /v1/chat/completions"
    }
    assert provider_parents == {row.span_id for row in chats}


def test_config_parsing() -> None:
    keys = parse_api_keys("k1:u1:t1, k2:u2:t2:x@y.example,")
    assert keys["k1"] == Principal("u1", "t1")
    assert keys["k2"].username == "x"
    with pytest.raises(ValueError, match="entry #1") as info:
        parse_api_keys("secret-only")
    assert "secret-only" not in str(info.value)
    assert async_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert async_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert "k1" not in repr(DemoConfig.from_env({"DEMO_API_KEYS": "k1:u1:t1"}))


def test_loadgen_sends_the_mix(demo_app: FastAPI) -> None:
    async def drive() -> loadgen.LoadSummary:
        transport = httpx.ASGITransport(app=demo_app, raise_app_exceptions=False)
        return await loadgen.run_load(
            "http://demo", requests=80, concurrency=4, seed=3, progress=False, transport=transport
        )

    with TestClient(demo_app):  # runs the lifespan (tables, services) around the load
        summary = asyncio.run(drive())
    assert len(summary.results) == 80
    statuses = {r.status for r in summary.results}
    assert {200, 201, 401, 404} <= statuses
    rendered = summary.render()
    assert rendered.startswith("requests   80 in")
    assert re.search(r"p50 [\d.]+ ms · p95 [\d.]+ ms · p99 [\d.]+ ms", rendered)


def test_loadgen_percentiles_and_unreachable_target() -> None:
    summary = loadgen.LoadSummary(
        [loadgen.Result("s", 200, seconds / 1000) for seconds in range(1, 101)]
    )
    assert (summary.percentile(50), summary.percentile(95), summary.percentile(99)) == (
        0.05,
        0.095,
        0.099,
    )
    assert loadgen.main(["--base-url", "http://127.0.0.1:9", "--requests", "1"]) == 2


def test_span_tree_from_the_file_exporter(tmp_path: Path) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind

    exporter = OTLPJsonFileSpanExporter(tmp_path / "spans.jsonl")
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with (
        tracer.start_as_current_span("root") as root,
        tracer.start_as_current_span("child", attributes={"sentry.op": "cache.get"}),
        tracer.start_as_current_span(
            "GET", kind=SpanKind.CLIENT, attributes={"http.method": "GET"}
        ),
    ):
        pass
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")
    lines = report.render_span_tree(
        report.spans_of_trace(report.read_json_lines(exporter.path), trace_id)
    )
    assert [line.split("[")[0].strip() for line in lines] == [
        "svc  root",
        "svc    child",
        "svc      GET",
    ]
    # The op Sentry shows: the explicit one, else what Relay derives from the attributes.
    assert [line.split("[")[1].split("]")[0] for line in lines] == [
        "internal op=default",
        "internal op=cache.get",
        "client op=http.client",
    ]
    event = {"user": {"id": "7", "email": "ada@example.com"}, "contexts": {}}
    assert "  user email   ada@example.com" in report.render_sentry_event(event, [])
    assert report.exemplar_lines('a_total 1 # {trace_id="abc"} 1\nb 2', "abc") == [
        'a_total 1 # {trace_id="abc"} 1'
    ]


@pytest.mark.timeout(300)
def test_python_m_demo_follows_one_trace_through_every_sink(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("SENTRY_DSN", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    }
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--out-dir", str(out), "--requests", "80"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    trace_id = re.search(r"Following trace ([0-9a-f]{32})", result.stdout)
    assert trace_id, result.stdout
    tid = trace_id.group(1)
    sections = re.split(r"\n(?=Sentry|Spans|Metrics|Logs|Secrets)", result.stdout)
    by_name = {section.split(maxsplit=1)[0]: section for section in sections[1:]}
    assert tid in by_name["Sentry"]  # the event's trace context
    assert "model-provider" in by_name["Spans"] and "agentic-platform" in by_name["Spans"]
    assert f'trace_id="{tid}"' in by_name["Metrics"]
    assert "demo.agents" in by_name["Logs"] and "demo.model_provider" in by_name["Logs"]
    assert "MISSING" not in result.stdout
    assert (out / "report.txt").read_text().strip() in result.stdout
    for name in ("agentic-platform.log", "model-provider.log"):
        assert tid in (out / name).read_text()
    assert tid in (out / "spans.otlp.jsonl").read_text()
    assert tid in (out / "sentry-events.jsonl").read_text()
