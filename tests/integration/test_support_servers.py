"""Proof that every real-server fixture works with the real clients the library uses."""

from __future__ import annotations

import gzip
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sentry_sdk
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode, format_span_id, format_trace_id
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from sentry_sdk.consts import EndpointType
from sentry_sdk.utils import Dsn

from tests.support.alertmanager import Alertmanager
from tests.support.bugsink import Bugsink, BugsinkProject
from tests.support.failing_sockets import blackhole_listener, refused_port, slow_http_server
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.prometheus import Prometheus
from tests.support.sentry_receiver import SentryReceiver


def _tracer_provider(exporter: OTLPSpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "support-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@contextmanager
def _sentry_client(dsn: str, **options: object) -> Iterator[sentry_sdk.Client]:
    """A real sentry-sdk client bound to a forked scope, so tests never touch global state.
    Auto-enabled integrations are off: importing them all costs seconds and proves nothing."""
    client = sentry_sdk.Client(
        dsn=dsn,
        default_integrations=False,
        auto_enabling_integrations=False,
        **options,  # type: ignore[arg-type]
    )
    with sentry_sdk.new_scope() as scope:
        scope.set_client(client)
        try:
            yield client
        finally:
            client.close(timeout=5)


def _raise_and_capture(message: str) -> str:
    try:
        raise RuntimeError(message)
    except RuntimeError as error:
        event_id = sentry_sdk.capture_exception(error)
    assert event_id is not None
    return event_id


def test_otlp_receiver_decodes_a_real_protobuf_export(otlp_receiver: OTLPReceiver) -> None:
    exporter = OTLPSpanExporter(
        endpoint=otlp_receiver.traces_endpoint, compression=Compression.Gzip
    )
    provider = _tracer_provider(exporter)
    tracer = provider.get_tracer("support-test")
    with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("http.route", "/orders/{id}")
        parent.set_attribute("http.response.status_code", 500)
        with tracer.start_as_current_span("SELECT orders") as child:
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "db timeout"))
    provider.shutdown()

    trace_id = format_trace_id(parent.get_span_context().trace_id)
    spans = otlp_receiver.wait_for_spans(lambda span: span.trace_id == trace_id, count=2)
    by_name = {span.name: span for span in spans}
    server, query = by_name["GET /orders/{id}"], by_name["SELECT orders"]
    assert server.kind == "SERVER" and server.is_root
    assert server.attributes == {"http.route": "/orders/{id}", "http.response.status_code": 500}
    assert server.service_name == "support-test"
    assert query.parent_span_id == format_span_id(parent.get_span_context().span_id)
    assert (query.status_code, query.status_message) == ("ERROR", "db timeout")
    assert query.events[0].name == "retry" and query.events[0].attributes == {"attempt": 2}
    assert otlp_receiver.requests()[0].headers["content-encoding"] == "gzip"
    assert b"SELECT orders" in otlp_receiver.raw_bytes()


def test_otlp_receiver_decodes_otlp_json(otlp_receiver: OTLPReceiver) -> None:
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "json-span",
                                "kind": 3,
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                                "attributes": [{"key": "retries", "value": {"intValue": "3"}}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    request = urllib.request.Request(
        otlp_receiver.traces_endpoint,
        data=gzip.compress(json.dumps(document).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    [span] = otlp_receiver.spans_for_trace(trace_id)
    assert (span.span_id, span.kind, span.attributes) == (span_id, "CLIENT", {"retries": 3})
    assert span.resource_attributes == {"service.name": "js"}


def test_otlp_receiver_takes_sentry_otlp_path_with_auth_header(
    otlp_receiver: OTLPReceiver,
) -> None:
    # Built exactly as sentry_sdk.integrations.otlp.setup_otlp_traces_exporter builds it.
    auth = Dsn(otlp_receiver.sentry_dsn(project_id=7)).to_auth("sentry.python/test")
    exporter = OTLPSpanExporter(
        endpoint=auth.get_api_url(EndpointType.OTLP_TRACES),
        headers={"X-Sentry-Auth": auth.to_header()},
    )
    provider = _tracer_provider(exporter)
    provider.get_tracer("support-test").start_span("via-sentry-path").end()
    provider.shutdown()

    [span] = otlp_receiver.wait_for_spans(lambda span: span.name == "via-sentry-path")
    assert span.request_path == "/api/7/integration/otlp/v1/traces/"
    assert otlp_receiver.sentry_auth_headers()[0].startswith("Sentry sentry_key=otlppublickey")


def test_otlp_receiver_can_refuse_the_sentry_otlp_path() -> None:
    with OTLPReceiver(sentry_otlp_enabled=False) as receiver:
        auth = Dsn(receiver.sentry_dsn()).to_auth("sentry.python/test")
        exporter = OTLPSpanExporter(endpoint=auth.get_api_url(EndpointType.OTLP_TRACES))
        provider = _tracer_provider(exporter)
        provider.get_tracer("support-test").start_span("refused").end()
        provider.shutdown()
        assert receiver.spans() == []
        assert [request.status for request in receiver.rejected_requests()] == [404]


def test_sentry_receiver_gets_an_error_event_with_trace_context(
    sentry_receiver: SentryReceiver,
) -> None:
    with _sentry_client(sentry_receiver.dsn, traces_sample_rate=1.0, release="svc@1.0") as client:
        with sentry_sdk.start_transaction(name="checkout", op="http.server") as transaction:
            event_id = _raise_and_capture("payment declined")
        client.flush(timeout=5)

    [event] = sentry_receiver.wait_for("event", lambda event: event["event_id"] == event_id)
    assert event["contexts"]["trace"]["trace_id"] == transaction.trace_id
    assert event["exception"]["values"][0]["value"] == "payment declined"
    assert event["release"] == "svc@1.0"
    [received] = sentry_receiver.transactions()
    assert received["transaction"] == "checkout"
    # sentry-sdk picks brotli whenever the module is importable, which it is here.
    assert {
        envelope.http_headers.get("content-encoding") for envelope in sentry_receiver.envelopes()
    } == {"br"}
    assert {envelope.sentry_key for envelope in sentry_receiver.envelopes()} == {"testpublickey"}
    assert b"payment declined" in sentry_receiver.raw_bytes()


def test_sentry_receiver_accepts_the_legacy_store_endpoint(sentry_receiver: SentryReceiver) -> None:
    request = urllib.request.Request(
        f"{sentry_receiver.url}/api/1/store/?sentry_key=legacykey",
        data=gzip.compress(json.dumps({"event_id": "a" * 32, "message": "legacy"}).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read()) == {"id": "a" * 32}
    assert [event["message"] for event in sentry_receiver.events()] == ["legacy"]
    assert sentry_receiver.envelopes()[0].sentry_key == "legacykey"


def test_bugsink_stores_the_event_and_serves_it_through_its_api(
    bugsink: Bugsink, bugsink_project: BugsinkProject
) -> None:
    with _sentry_client(bugsink_project.dsn, traces_sample_rate=1.0, release="svc@2.0") as client:
        sentry_sdk.set_tag("tenant", "acme")
        sentry_sdk.set_user({"id": "user-42"})
        with sentry_sdk.start_transaction(name="agents.execute", op="http.server") as transaction:
            event_id = _raise_and_capture("agent crashed")
        client.flush(timeout=5)

    stored = bugsink.wait_for_event_id(bugsink_project, event_id)
    assert stored.trace_id == transaction.trace_id
    assert stored.tags["tenant"] == "acme"
    assert stored.data["user"]["id"] == "user-42"
    assert stored.data["release"] == "svc@2.0"
    # The transaction was sent too, and Bugsink keeps only the error event.
    assert [event.event_id for event in bugsink.events(bugsink_project)] == [stored.event_id]


def test_prometheus_scrapes_an_openmetrics_exemplar(
    prometheus_factory: Callable[..., Prometheus],
) -> None:
    registry = CollectorRegistry()
    latency = Histogram("support_request_duration_seconds", "request latency", registry=registry)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    latency.observe(0.2, exemplar={"trace_id": trace_id})
    exposition, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        prometheus = prometheus_factory(targets=[f"127.0.0.1:{exposition.server_port}"])
        [target] = prometheus.wait_for_targets_up()
        assert target["lastError"] == ""
        exemplars = prometheus.wait_for_exemplars(
            "support_request_duration_seconds_bucket",
            lambda labels: labels.get("trace_id") == trace_id,
        )
        assert exemplars[0] == {"trace_id": trace_id}
        [count] = prometheus.wait_for_query("support_request_duration_seconds_count")
        assert count["value"][1] == "1"
    finally:
        exposition.shutdown()
        exposition.server_close()
        thread.join(timeout=5)


def test_alertmanager_receives_an_alert_from_prometheus(
    prometheus_factory: Callable[..., Prometheus],
    alertmanager_factory: Callable[..., Alertmanager],
    tmp_path: Path,
) -> None:
    alertmanager = alertmanager_factory()
    assert alertmanager.status()["cluster"]["status"] == "disabled"
    rules = tmp_path / "rules.yml"
    rules.write_text(
        json.dumps(
            {
                "groups": [
                    {
                        "name": "support",
                        "rules": [
                            {
                                "alert": "SupportAlwaysFiring",
                                "expr": "vector(1)",
                                "labels": {"severity": "page"},
                            },
                        ],
                    }
                ]
            }
        )
    )
    prometheus_factory(rule_files=[rules], alertmanager_url=alertmanager.url)

    alert = alertmanager.wait_for_alert(
        lambda alert: alert["labels"]["alertname"] == "SupportAlwaysFiring"
    )
    assert alert["labels"]["severity"] == "page"


def _export_one_span(endpoint: str, timeout_s: float) -> tuple[SpanExportResult, float]:
    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout_s)
    provider = TracerProvider()
    span = provider.get_tracer("resilience").start_span("lost")
    span.end()
    started = time.monotonic()
    result = exporter.export([span])  # type: ignore[list-item]
    exporter.shutdown()
    return result, time.monotonic() - started


def test_failing_endpoints_fail_the_way_they_promise() -> None:
    with refused_port() as refused, pytest.raises(ConnectionRefusedError):
        socket.create_connection((refused.host, refused.port), timeout=2)

    with blackhole_listener() as blackhole:
        result, elapsed = _export_one_span(f"{blackhole.url}/v1/traces", timeout_s=1.0)
        assert result is SpanExportResult.FAILURE
        assert elapsed < 5  # the exporter's own timeout ends the wait, not the listener
        assert blackhole.accepted_connections

    with slow_http_server(delay_s=1.5) as slow:
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            urllib.request.urlopen(f"{slow.url}/v1/traces", timeout=0.3)
        with urllib.request.urlopen(f"{slow.url}/v1/traces", timeout=5) as response:
            assert response.status == 200
        assert slow.request_count == 2
