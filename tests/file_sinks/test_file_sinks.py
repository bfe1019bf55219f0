"""The local file sinks, driven by a real sentry-sdk client and a real OTel TracerProvider."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from sentry_sdk.envelope import Envelope, Item, PayloadRef

from telemetry.file_sinks import (
    JsonLinesAppender,
    OTLPJsonFileSpanExporter,
    SentryFileTransport,
)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def sentry_client(tmp_path: Path) -> Any:
    """A real, initialised sentry-sdk whose transport is the file sink (no DSN at all)."""
    transport = SentryFileTransport(tmp_path / "events.jsonl")
    sentry_sdk.init(
        transport=transport,
        release="svc@1.2.3",
        environment="staging",
        default_integrations=False,
        traces_sample_rate=1.0,
    )
    yield transport
    sentry_sdk.get_client().close(timeout=0)
    # Back to a non-recording client and empty scopes for the other tests (a bare
    # sentry_sdk.init() would also load every default integration: seconds, for nothing).
    sentry_sdk.get_global_scope().set_client(None)
    sentry_sdk.get_isolation_scope().clear()


def test_sentry_error_event_is_one_json_line(sentry_client: SentryFileTransport) -> None:
    sentry_sdk.set_tag("tenant", "acme")
    sentry_sdk.set_user({"id": "u-1"})
    try:
        raise KeyError("missing agent")
    except KeyError as exc:
        event_id = sentry_sdk.capture_exception(exc)
    sentry_sdk.flush()

    lines = read_lines(sentry_client.path)
    assert [line["type"] for line in lines] == ["event"]
    payload = lines[0]["payload"]
    assert payload["event_id"] == event_id
    assert payload["release"] == "svc@1.2.3"
    assert payload["environment"] == "staging"
    assert payload["tags"]["tenant"] == "acme"
    assert payload["user"]["id"] == "u-1"
    assert payload["exception"]["values"][-1]["type"] == "KeyError"
    assert len(payload["contexts"]["trace"]["trace_id"]) == 32
    assert lines[0]["envelope"]["event_id"] == event_id


def test_sentry_transaction_and_message(sentry_client: SentryFileTransport) -> None:
    with (
        sentry_sdk.start_transaction(name="agent.execute", op="agent"),
        sentry_sdk.start_span(op="llm.call", name="complete"),
    ):
        pass
    sentry_sdk.capture_message("quota low", level="warning")

    lines = read_lines(sentry_client.path)
    by_type = {line["type"]: line["payload"] for line in lines}
    assert by_type["transaction"]["transaction"] == "agent.execute"
    assert [span["op"] for span in by_type["transaction"]["spans"]] == ["llm.call"]
    assert by_type["event"]["message"] == "quota low"
    assert by_type["event"]["level"] == "warning"


def test_sentry_binary_items_are_kept_as_base64(tmp_path: Path) -> None:
    transport = SentryFileTransport(tmp_path / "events.jsonl")
    envelope = Envelope(headers={"event_id": "a" * 32})
    envelope.add_item(Item(payload=PayloadRef(bytes=b"\x00\xffraw"), type="attachment"))
    envelope.add_item(Item(payload=b'{"ok": true}', type="client_report"))
    transport.capture_envelope(envelope)

    attachment, report = read_lines(transport.path)
    assert attachment["payload"] == {"base64": "AP9yYXc="}
    assert attachment["headers"]["type"] == "attachment"
    assert report["payload"] == {"ok": True}


def test_sentry_transport_reports_written_items(tmp_path: Path) -> None:
    counted: list[tuple[str, int]] = []
    transport = SentryFileTransport(
        tmp_path / "events.jsonl", on_sent=lambda kind, n: counted.append((kind, n))
    )
    envelope = Envelope()
    envelope.add_event({"event_id": "b" * 32, "message": "x"})
    transport.capture_envelope(envelope)
    assert counted == [("error", 1)]


def make_provider(exporter: OTLPJsonFileSpanExporter, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def test_span_exporter_writes_otlp_json(tmp_path: Path) -> None:
    exporter = OTLPJsonFileSpanExporter(tmp_path / "spans.jsonl")
    provider = make_provider(exporter, "agentic-platform")
    tracer = provider.get_tracer("test.scope")
    with tracer.start_as_current_span("POST /api/v1/agents/execute", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.response.status_code", 500)
        root.set_status(Status(StatusCode.ERROR, "boom"))
        with tracer.start_as_current_span("llm.call") as child:
            child_ctx = child.get_span_context()
    provider.shutdown()

    requests = read_lines(exporter.path)
    assert len(requests) == 2  # SimpleSpanProcessor: one request per ended span
    spans = {
        span["name"]: (resource_spans, scope_spans, span)
        for request in requests
        for resource_spans in request["resourceSpans"]
        for scope_spans in resource_spans["scopeSpans"]
        for span in scope_spans["spans"]
    }
    resource, scope, server = spans["POST /api/v1/agents/execute"]
    _, _, llm = spans["llm.call"]
    trace_hex = format(root.get_span_context().trace_id, "032x")
    assert server["traceId"] == trace_hex  # hex, as OTLP/JSON requires, not base64
    assert llm["traceId"] == trace_hex
    assert llm["spanId"] == format(child_ctx.span_id, "016x")
    assert llm["parentSpanId"] == server["spanId"]
    assert "parentSpanId" not in server
    assert server["kind"] == 2  # SPAN_KIND_SERVER as an integer enum
    assert server["status"] == {"code": 2, "message": "boom"}
    assert {"key": "http.response.status_code", "value": {"intValue": "500"}} in server[
        "attributes"
    ]
    assert {"key": "service.name", "value": {"stringValue": "agentic-platform"}} in resource[
        "resource"
    ]["attributes"]
    assert scope["scope"]["name"] == "test.scope"
    assert int(server["endTimeUnixNano"]) >= int(server["startTimeUnixNano"])


def test_span_exporter_refuses_after_shutdown(tmp_path: Path) -> None:
    exporter = OTLPJsonFileSpanExporter(tmp_path / "spans.jsonl")
    provider = make_provider(exporter, "svc")
    exporter.shutdown()
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert exporter.force_flush() is True
    provider.get_tracer("t").start_span("late").end()
    assert not exporter.path.exists()


def test_span_exporter_reports_io_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the sink directory should be")
    exporter = OTLPJsonFileSpanExporter(blocker / "spans.jsonl")
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("s")
    span.end()
    assert exporter.export([span]) is SpanExportResult.FAILURE  # type: ignore[list-item]


def test_concurrent_thread_appends_never_interleave(tmp_path: Path) -> None:
    exporter = OTLPJsonFileSpanExporter(tmp_path / "spans.jsonl")
    provider = make_provider(exporter, "svc")
    tracer = provider.get_tracer("t")

    def work(worker: int) -> None:
        for i in range(50):
            with tracer.start_as_current_span(f"w{worker}-{i}") as span:
                span.set_attribute("payload", "x" * 2000)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    names = {
        span["name"]
        for request in read_lines(exporter.path)
        for rs in request["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    }
    assert len(names) == 400


def _append_from_process(path: str, worker: int) -> None:
    appender = JsonLinesAppender(path)
    for i in range(200):
        appender.append([{"worker": worker, "i": i, "pad": "y" * 5000}])


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork (POSIX)"
)
def test_concurrent_process_appends_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    # fork, not spawn: the children need nothing but the already-imported appender, and a
    # spawned child would re-import the whole library three times over.
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_from_process, args=(str(path), n)) for n in range(3)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    records = read_lines(path)  # any torn line would fail json.loads
    assert sorted((r["worker"], r["i"]) for r in records) == [
        (w, i) for w in range(3) for i in range(200)
    ]
