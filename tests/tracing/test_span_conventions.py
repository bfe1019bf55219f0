"""Span attributes under the names Sentry reads: the thread and segment attributes set at
start (``SpanContextAttributes``), and those derived on export (``derived_attributes``),
which go through the scrubbing policy with the rest."""

from __future__ import annotations

import threading

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from telemetry.scrubbing import ScrubbingPolicy
from telemetry.shared import TRANSACTION_ATTRIBUTE
from telemetry.tracing import SpanContextAttributes, derived_attributes, scrub_span

SEGMENT = {"sentry.release": "shop@1.2.3", "sentry.environment": "staging",
           "sentry.platform": "python"}  # fmt: skip


def _spans(segment: dict[str, str]) -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SpanContextAttributes(segment))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in exporter.get_finished_spans()}


def test_every_span_has_its_thread_and_a_segment_span_what_sentry_builds_a_transaction_from() -> (
    None
):
    tracer, exporter = _spans(SEGMENT)
    with tracer.start_as_current_span(
        "GET /items/{id}", kind=SpanKind.SERVER, attributes={"http.route": "/items/{id}"}
    ), tracer.start_as_current_span("child"):
        pass
    with tracer.start_as_current_span("nightly", attributes={TRANSACTION_ATTRIBUTE: True}):
        pass
    remote = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED))))  # fmt: skip
    with tracer.start_as_current_span("GET /nowhere", context=remote, kind=SpanKind.SERVER):
        pass
    spans = _by_name(exporter)
    thread = threading.current_thread()
    for span in spans.values():
        assert span.attributes["thread.id"] == thread.ident
        assert span.attributes["thread.name"] == thread.name
    server = spans["GET /items/{id}"].attributes
    assert {k: server[k] for k in SEGMENT} == SEGMENT
    assert server["sentry.span.source"] == "route"
    assert spans["nightly"].attributes["sentry.span.source"] == "custom"
    assert spans["GET /nowhere"].attributes["sentry.span.source"] == "url"
    child = spans["child"].attributes
    assert not any(k in child for k in (*SEGMENT, "sentry.span.source"))


def test_a_thread_of_its_own_is_named_and_without_sentry_only_the_thread_is_set() -> None:
    tracer, exporter = _spans({})

    def work() -> None:
        with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER):
            pass

    worker = threading.Thread(target=work, name="worker-7")
    worker.start()
    worker.join()
    [span] = exporter.get_finished_spans()
    assert span.attributes["thread.name"] == "worker-7"
    assert span.attributes["thread.id"] == worker.ident
    assert "sentry.release" not in span.attributes and "sentry.span.source" not in span.attributes


def _finished(name: str, kind: SpanKind, attributes: dict[str, object]) -> ReadableSpan:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("opentelemetry.instrumentation.redis")
    with tracer.start_as_current_span(name, kind=kind, attributes=attributes):  # type: ignore[arg-type]
        pass
    [span] = exporter.get_finished_spans()
    return span


def test_an_http_client_span_gets_sentrys_url_query_fragment_status_and_reason() -> None:
    span = _finished("GET", SpanKind.CLIENT, {
        "http.method": "GET", "http.url": "https://api.example/prices/42?q=1#top",
        "http.status_code": 404})  # fmt: skip
    assert derived_attributes(span) == {
        "url": "https://api.example/prices/42",
        "http.query": "q=1",
        "http.fragment": "top",
        "http.response.status_code": 404,
        "reason": "Not Found",
    }
    plain = _finished("GET", SpanKind.CLIENT, {"http.method": "GET", "http.url": "http://a/b"})
    assert derived_attributes(plain) == {"url": "http://a/b", "http.query": "", "http.fragment": ""}


def test_database_and_cache_spans_get_server_and_peer_names() -> None:
    sql = _finished("SELECT", SpanKind.CLIENT, {
        "db.system": "postgresql", "net.peer.name": "db", "net.peer.port": 5432})  # fmt: skip
    assert derived_attributes(sql) == {"server.address": "db", "server.port": 5432}
    cache = _finished("GET", SpanKind.CLIENT, {
        "db.system": "redis", "net.peer.name": "cache", "net.peer.port": 6379,
        "db.redis.database_index": 2, "sentry.op": "cache.get"})  # fmt: skip
    assert derived_attributes(cache) == {
        "server.address": "cache", "server.port": 6379, "db.name": "2",
        "db.driver.name": "redis-py", "network.peer.address": "cache", "network.peer.port": 6379,
    }  # fmt: skip
    given = _finished("SELECT", SpanKind.CLIENT, {
        "db.system": "postgresql", "net.peer.name": "db", "server.address": "primary"})  # fmt: skip
    assert derived_attributes(given) is None  # what the instrumentation set wins
    assert derived_attributes(_finished("work", SpanKind.INTERNAL, {"a": 1})) is None


def test_derived_attributes_are_exported_and_scrubbed_like_the_rest() -> None:
    span = _finished("GET", SpanKind.CLIENT, {
        "http.method": "GET", "http.url": "https://api.example/p?token=abc123secret",
        "http.status_code": 200})  # fmt: skip
    exported = scrub_span(ScrubbingPolicy.default(), span)
    assert exported.attributes["url"] == "https://api.example/p"
    assert "abc123secret" not in str(exported.attributes["http.query"])
    assert "abc123secret" not in str(exported.attributes["http.url"])
    assert exported.attributes["reason"] == "OK"
    server = _finished("GET /x", SpanKind.SERVER, {"http.method": "GET", "http.status_code": 200})
    assert scrub_span(ScrubbingPolicy.default(), server).attributes[
        "http.response.status_code"] == 200  # fmt: skip
