"""OTEL_EXPORTER_OTLP_PROTOCOL=grpc: the Jaeger arm speaks OTLP/gRPC to a real gRPC server
that decodes the protobuf requests."""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from telemetry import TelemetrySettings
from tests.integration._service import call, running_service
from tests.support.net import free_port


class TraceCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []
        self.arrived = threading.Event()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append((span.trace_id.hex(), span.name))
        self.arrived.set()
        return trace_service_pb2.ExportTraceServiceResponse()


def test_spans_reach_a_grpc_collector(postgres_url: str, redis_url: str) -> None:
    collector = TraceCollector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        settings = TelemetrySettings(
            environment="staging",
            service_name="grpc-test",
            otlp_endpoint=f"http://127.0.0.1:{port}",
            otlp_protocol="grpc",
        )
        trace_id = "7bf92f3577b34da6a3ce929d0e0e4736"
        with running_service(settings, postgres_url, redis_url) as (url, handle, _):
            call(
                "GET",
                f"{url}/api/v1/items/4",
                {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
            )
            handle.force_flush()
            assert collector.arrived.wait(10)
    finally:
        server.stop(grace=1)
    names = {name for span_trace, name in collector.spans if span_trace == trace_id}
    assert "GET /api/v1/items/{item_id}" in names
