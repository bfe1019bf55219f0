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
_STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
# gateway.yaml's latency policy (threshold_ms: 2000).
_SLOW_NS = 2_000_000_000
# gateway.yaml's spanmetrics dimensions, old and new semantic-convention names.
_SPANMETRICS_DIMENSIONS = (
    ("http.route",),
    ("http.request.method", "http.method"),
    ("http.response.status_code", "http.status_code"),
)
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
            with TestClient(app, raise_server_exceptions=False) as client:
                # On the loop that ran the lifespan: pooled PostgreSQL and Redis
                # connections belong to it.
                summary = client.portal.call(drive)
                metrics_text = client.get("/metrics").text
        finally:
            app.state.telemetry.shutdown()
            provider_app.state.telemetry.shutdown()
        batches = report.read_json_lines(sinks / "spans.otlp.jsonl")

    return {
        "requests_sent": len(summary.results),
        **_analyse(batches, critical_routes=set(settings.critical_routes)),
        "prometheus_series_per_replica": _series_by_family(metrics_text),
    }


def _analyse(batches: list[dict[str, Any]], critical_routes: set[str]) -> dict[str, Any]:
    """Sizes, spans per request, what each tail-sampling policy of gateway.yaml would keep,
    and the dimension sets the gateway's spanmetrics connector would make series of."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    span_sizes: list[int] = []
    request_bytes = 0
    traces: dict[str, dict[str, Any]] = defaultdict(
        lambda: {
            "spans": 0,
            "root": None,
            "error": False,
            "critical": False,
            "start": None,
            "end": None,
        }
    )
    dimension_sets: set[tuple[Any, ...]] = set()
    for batch in batches:
        message = json_format.ParseDict(_hex_to_base64(batch), ExportTraceServiceRequest())
        request_bytes += message.ByteSize()
        for resource_spans in message.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    span_sizes.append(span.ByteSize())
                    attributes = {a.key: a.value for a in span.attributes}
                    trace = traces[span.trace_id.hex()]
                    trace["spans"] += 1
                    if not span.parent_span_id:
                        trace["root"] = trace["root"] or span.name
                    trace["error"] |= span.status.code == _STATUS_ERROR
                    route = attributes.get("http.route")
                    trace["critical"] |= route is not None and route.string_value in critical_routes
                    start, end = span.start_time_unix_nano, span.end_time_unix_nano
                    trace["start"] = min(start, trace["start"] or start)
                    trace["end"] = max(end, trace["end"] or end)
                    dimension_sets.add(
                        (
                            resource.get("service.name"),
                            span.name,
                            span.kind,
                            span.status.code,
                            *(
                                _attribute_text(attributes, *names)
                                for names in _SPANMETRICS_DIMENSIONS
                            ),
                        )
                    )
    # User requests only: not the load generator's readiness call, not the start-up DB work
    # (table creation, connects) whose spans have no request around them.
    requests = [
        t
        for t in traces.values()
        if t["root"] and _HTTP_ROOT.match(t["root"]) and "/health" not in t["root"]
    ]
    per_root: dict[str, list[int]] = defaultdict(list)
    for trace in requests:
        per_root[trace["root"]].append(trace["spans"])
    counts = [t["spans"] for t in requests]

    def share(flag: str) -> float:
        return sum(1 for t in requests if t[flag]) / len(requests)

    for trace in requests:
        trace["slow"] = trace["end"] - trace["start"] > _SLOW_NS
        trace["any"] = trace["error"] or trace["slow"] or trace["critical"]
    kept_by_rule = share("any")
    spans_by_rule = sum(t["spans"] for t in requests if t["any"]) / sum(counts)
    # The same without the critical-routes policy: what that one policy costs downstream.
    spans_no_critical = sum(t["spans"] for t in requests if t["error"] or t["slow"]) / sum(counts)
    return {
        "request_traces": len(requests),
        "spans": len(span_sizes),
        "spans_per_trace_mean": round(statistics.mean(counts), 2),
        "spans_per_trace_max": max(counts),
        "spans_per_trace_by_root": {
            root: round(statistics.mean(n), 1) for root, n in sorted(per_root.items())
        },
        "span_bytes_mean": round(statistics.mean(span_sizes)),
        "span_bytes_p95": _percentile(span_sizes, 95),
        "export_request_bytes_per_span": round(request_bytes / len(span_sizes)),
        "export_batches": len(batches),
        "tail_sampling_trace_share": {
            "errors": round(share("error"), 3),
            "slow_over_2s": round(share("slow"), 3),
            "critical_routes": round(share("critical"), 3),
            "any_rule": round(kept_by_rule, 3),
            "kept_with_10pct_baseline": round(kept_by_rule + 0.1 * (1 - kept_by_rule), 3),
        },
        # Storage follows spans, not traces: the critical route's traces are the big ones.
        "tail_sampling_span_share": {
            "any_rule": round(spans_by_rule, 3),
            "kept_with_10pct_baseline": round(spans_by_rule + 0.1 * (1 - spans_by_rule), 3),
            "kept_without_critical_routes": round(
                spans_no_critical + 0.1 * (1 - spans_no_critical), 3
            ),
        },
        "spanmetrics_dimension_sets": len(dimension_sets),
    }


def _attribute_text(attributes: dict[str, Any], *names: str) -> str | None:
    for name in names:
        if name in attributes:
            value = attributes[name]
            return value.string_value or str(value.int_value)
    return None


def _series_by_family(metrics_text: str) -> dict[str, int]:
    """Samples of a Prometheus text exposition, per metric family (name before labels)."""
    families: Counter[str] = Counter()
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            families[re.sub(r"_(bucket|sum|count|created|total)$", "", name)] += 1
    top = dict(sorted(families.items(), key=lambda item: -item[1])[:8])
    return {"total": sum(families.values()), **top}


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
