"""The fan-out's own OTLP encoder writes the message OpenTelemetry's encoder builds."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from telemetry.tracing.otlp_encoding import SpanEncoder

RESOURCE = Resource.create({"service.name": "svc", "service.version": "1.2.3"})
SCOPE = InstrumentationScope("opentelemetry.instrumentation.asgi", "0.50b0")
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _context(span_id: int, *, remote: bool = False, state: TraceState | None = None) -> Any:
    return SpanContext(TRACE_ID, span_id, remote, SAMPLED, state)


def _span(**overrides: Any) -> ReadableSpan:
    fields: dict[str, Any] = {
        "name": "GET /items/{item_id}",
        "context": _context(0x00F067AA0BA902B7),
        "parent": _context(0x1111111111111111, remote=True),
        "resource": RESOURCE,
        "attributes": {
            "http.method": "GET",
            "http.route": "/items/{item_id}",
            "http.status_code": 200,
            "net.peer.port": 50000,
            "sentry.sample_rate": 0.25,
            "flag": True,
            "off": False,
            "zero": 0,
            "negative": -42,
            "empty": "",
            "unicode": "héllo ✓",
            "tags": ("a", "b"),
            "numbers": (1, 2.5, True),
            "nothing": (),
        },
        "events": (
            Event(
                "exception",
                {"exception.type": "ValueError", "exception.message": "bad"},
                1_700_000_000_123_456_789,
            ),
        ),
        "links": (Link(_context(0x2222222222222222), {"link.kind": "follows"}),),
        "kind": SpanKind.SERVER,
        "status": Status(StatusCode.ERROR, "it broke"),
        "start_time": 1_700_000_000_000_000_000,
        "end_time": 1_700_000_000_250_000_000,
        "instrumentation_scope": SCOPE,
    }
    fields.update(overrides)
    return ReadableSpan(**fields)


def _same(spans: list[ReadableSpan]) -> None:
    body = SpanEncoder().encode(spans)
    theirs = encode_spans(spans)
    assert ExportTraceServiceRequest.FromString(body) == theirs
    # Even byte for byte (fields in the order upb writes them), though receivers only need
    # the same message.
    assert body == theirs.SerializeToString()
    # Twice with the same encoder: remembered attributes encode the same.
    encoder = SpanEncoder()
    encoder.encode(spans)
    assert ExportTraceServiceRequest.FromString(encoder.encode(spans)) == theirs


def test_a_rich_span() -> None:
    _same([_span()])


@pytest.mark.parametrize(
    "overrides",
    [
        {"parent": None, "events": (), "links": (), "status": Status(StatusCode.UNSET)},
        {"kind": SpanKind.CLIENT, "status": Status(StatusCode.OK)},
        {"kind": SpanKind.INTERNAL, "name": "", "attributes": {}},
        {"kind": SpanKind.PRODUCER, "parent": _context(0x33, remote=False)},
        {"kind": SpanKind.CONSUMER, "instrumentation_scope": None},
        {"context": _context(0x44, state=TraceState([("vendor", "v1"), ("other", "x")]))},
        {"attributes": {"big": (1 << 63) - 1, "small": -(1 << 63), "nan": float("nan")}},
        {"attributes": {"minus_zero": -0.0, "zero": 0.0, "one": 1, "true": True, "f": 1.0}},
        {"instrumentation_scope": InstrumentationScope("s", None, "https://schema", {"k": "v"})},
        {"resource": Resource({"service.name": "x"}, "https://schema/resource")},
    ],
)
def test_every_field(overrides: dict[str, Any]) -> None:
    _same([_span(**overrides)])


def test_grouped_by_resource_and_scope_as_opentelemetry_groups() -> None:
    other_scope = InstrumentationScope("opentelemetry.instrumentation.sqlalchemy", "0.50b0")
    equal_resource = Resource.create({"service.name": "svc", "service.version": "1.2.3"})
    other_resource = Resource.create({"service.name": "other"})
    equal_scope = InstrumentationScope("opentelemetry.instrumentation.asgi", "0.50b0")
    spans = [
        _span(),
        _span(instrumentation_scope=other_scope, kind=SpanKind.CLIENT),
        _span(resource=other_resource),
        # Equal to the first, not the same objects: one group with the first.
        _span(resource=equal_resource, instrumentation_scope=equal_scope),
        _span(instrumentation_scope=None),
    ]
    _same(spans)


def test_values_it_does_not_write_go_to_opentelemetry(caplog: pytest.LogCaptureFixture) -> None:
    # Beyond 64 bits: OpenTelemetry logs and drops that one attribute, and so here.
    spans = [_span(attributes={"huge": 1 << 70, "kept": "yes"}), _span()]
    with caplog.at_level(logging.ERROR):
        _same(spans)
    decoded = ExportTraceServiceRequest.FromString(SpanEncoder().encode(spans))
    first = decoded.resource_spans[0].scope_spans[0].spans[0]
    assert [kv.key for kv in first.attributes] == ["kept"]
    _same([_span(attributes={"raw": b"\x00\x01", "mapping": {"a": 1}})])


def test_the_memo_is_bounded() -> None:
    encoder = SpanEncoder()
    for i in range(3):
        spans = [_span(attributes={"http.url": f"/items/{i}-{n}"}) for n in range(3000)]
        encoder.encode(spans)
    assert len(encoder._attributes) <= 4096
