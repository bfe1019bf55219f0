"""Measure what the demo sends to a Collector: spans per request and bytes per span.

    .venv/bin/python deploy/otel-collector/measure_spans.py                 # SQLite, no Redis
    .venv/bin/python deploy/otel-collector/measure_spans.py --requests 2000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        --redis-url redis://127.0.0.1:6379/15

The figures in deploy/README.md (capacity model) come from this script. Two measurements:

* ``demo``: the demo API and its model provider run in-process (staging profile: every
  span sampled, every sink a file), the load generator's mix is driven through an ASGI
  transport, and every span the OTLP exporter would have sent is re-encoded to OTLP
  protobuf. Gives spans per request by route and the protobuf size of real spans.
* ``sdk``: 1,000 spans shaped like the demo's (server, DB, Redis, HTTP client) made with the
  OpenTelemetry SDK and encoded by the project's OTLP encoder
  (``encode_spans(...).SerializeToString()``), the exact bytes the OTLP/HTTP exporter posts.

Output: one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import statistics
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# OTLP/JSON ids the file sink writes as hex; protobuf's JSON mapping wants base64.
_ID_FIELDS = {"traceId", "spanId", "parentSpanId"}
# A server span's name: "<METHOD> <route template>".
_HTTP_ROOT = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /")


def _hex_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                base64.b64encode(bytes.fromhex(value)).decode()
                if key in _ID_FIELDS and isinstance(value, str)
                else _hex_to_base64(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_to_base64(value) for value in node]
    return node


def _percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def sdk_spans(count: int = 1000, batch: int = 512) -> dict[str, Any]:
    """Encode ``count`` demo-shaped spans made by the real SDK; bytes per span."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    exporter = InMemorySpanExporter()
    resource = Resource.create(
        {
            "service.name": "agentic-platform",
            "service.version": "0.1.0",
            "deployment.environment.name": "production",
        }
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("opentelemetry.instrumentation.fastapi", "0.66b1")
    made = 0
    while made < count:
        with tracer.start_as_current_span(
            "GET /api/v1/agents/{agent_id}",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "http.route": "/api/v1/agents/{agent_id}",
                "url.scheme": "http",
                "url.path": "/api/v1/agents/6f1c2d3e",
                "server.address": "api",
                "server.port": 8000,
                "network.protocol.version": "1.1",
                "user_agent.original": "python-httpx/0.28.1",
                "client.address": "10.42.0.17",
                "http.response.status_code": 200,
            },
        ):
            with tracer.start_as_current_span(
                "GET",
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system": "redis",
                    "db.statement": "GET ?",
                    "net.peer.name": "redis",
                    "net.peer.port": 6379,
                    "db.redis.database_index": 0,
                },
            ):
                pass
            with tracer.start_as_current_span(
                "SELECT telemetry",
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system": "postgresql",
                    "db.name": "telemetry",
                    "db.statement": "SELECT agents.id, agents.tenant, agents.name, "
                    "agents.model, agents.executions FROM agents WHERE agents.id = "
                    "%(pk_1)s::UUID AND agents.tenant = %(tenant_1)s::VARCHAR",
                    "db.user": "telemetry",
                    "net.peer.name": "postgres",
                    "net.peer.port": 5432,
                },
            ):
                pass
            with tracer.start_as_current_span(
                "POST",
                kind=SpanKind.CLIENT,
                attributes={
                    "http.request.method": "POST",
                    "url.full": "http://model-provider:8001/v1/complete",
                    "server.address": "model-provider",
                    "server.port": 8001,
                    "http.response.status_code": 503,
                },
            ) as client_span:
                client_span.set_status(Status(StatusCode.ERROR))
        made += 4
    provider.shutdown()
    spans = list(exporter.get_finished_spans())[:count]
    single = [len(encode_spans([span]).SerializeToString()) for span in spans]
    batched = sum(
        len(encode_spans(spans[i : i + batch]).SerializeToString())
        for i in range(0, len(spans), batch)
    )
    return {
        "spans": len(spans),
        f"bytes_per_span_in_batches_of_{batch}": round(batched / len(spans)),
        "bytes_per_span_alone_mean": round(statistics.mean(single)),
    }


def demo_spans(
    requests: int, database_url: str | None, redis_url: str | None, seed: int = 7
) -> dict[str, Any]:
    """Drive the demo's load mix in-process and measure every span it exports."""
    import httpx
    from demo import loadgen, model_provider, report
    from demo.app import create_app
    from demo.config import BUILTIN_API_KEYS, DemoConfig, Principal
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from starlette.testclient import TestClient

    from telemetry.settings import load_settings

    with tempfile.TemporaryDirectory() as scratch:
        sinks = Path(scratch) / "sinks"
        sinks.mkdir()
        settings = load_settings(environment="staging", file_sink_dir=sinks, log_level="WARNING")
        config = DemoConfig(
            database_url=database_url or f"sqlite+aiosqlite:///{scratch}/agents.db",
            redis_url=redis_url,
            model_provider_url="http://provider",
            api_keys={key: Principal(*value) for key, value in BUILTIN_API_KEYS.items()},
        )
        app = create_app(settings, config)
        provider_app = model_provider.create_app(settings)

        async def drive() -> loadgen.LoadSummary:
            app.state.services.provider = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=provider_app), base_url="http://provider"
            )
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            return await loadgen.run_load(
                "http://demo",
                requests=requests,
                concurrency=4,
                seed=seed,
                progress=False,
                transport=transport,
            )

        try:
            with TestClient(app, raise_server_exceptions=False):
                summary = asyncio.run(drive())
        finally:
            app.state.telemetry.shutdown()
            provider_app.state.telemetry.shutdown()
        batches = report.read_json_lines(sinks / "spans.otlp.jsonl")

    span_sizes: list[int] = []
    request_bytes = 0
    spans_by_trace: Counter[str] = Counter()
    route_of_trace: dict[str, str] = {}
    for batch in batches:
        message = json_format.ParseDict(_hex_to_base64(batch), ExportTraceServiceRequest())
        request_bytes += message.ByteSize()
        for resource_spans in message.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    span_sizes.append(span.ByteSize())
                    trace_id = span.trace_id.hex()
                    spans_by_trace[trace_id] += 1
                    if not span.parent_span_id:
                        route_of_trace.setdefault(trace_id, span.name)
    per_route: dict[str, list[int]] = defaultdict(list)
    for trace_id, spans in spans_by_trace.items():
        per_route[route_of_trace.get(trace_id, "<no root>")].append(spans)
    # User requests only: not the load generator's readiness call, not the start-up DB work
    # (table creation, connects) whose spans have no request around them.
    traces = [
        n
        for route, counts in per_route.items()
        if _HTTP_ROOT.match(route) and "/health" not in route
        for n in counts
    ]
    return {
        "requests_sent": len(summary.results),
        "request_traces": len(traces),
        "spans": len(span_sizes),
        "spans_per_trace_mean": round(statistics.mean(traces), 2),
        "spans_per_trace_max": max(traces),
        "spans_per_trace_by_root": {
            route: round(statistics.mean(counts), 1) for route, counts in sorted(per_route.items())
        },
        "span_bytes_mean": round(statistics.mean(span_sizes)),
        "span_bytes_p95": _percentile(span_sizes, 95),
        "export_request_bytes_per_span": round(request_bytes / len(span_sizes)),
        "export_batches": len(batches),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: a SQLite file)")
    parser.add_argument("--redis-url", help="Redis URL for the agent cache (default: none)")
    args = parser.parse_args(argv)
    result = {
        "sdk": sdk_spans(),
        "demo": demo_spans(args.requests, args.database_url, args.redis_url),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
