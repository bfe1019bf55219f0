"""The envelope arm's transaction rules: which spans become Sentry transactions, which join
one, and the facade's op/description on them (through a real TracerProvider)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sentry_sdk
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from telemetry.sentry.envelope import envelope_span_processor, is_transaction_root
from telemetry.shared import TRANSACTION_ATTRIBUTE

REMOTE = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
)


def tracer() -> tuple[TracerProvider, trace.Tracer]:
    provider = TracerProvider()
    provider.add_span_processor(envelope_span_processor())
    return provider, provider.get_tracer("test")


def envelope_mode(sentry: Callable[..., Any]) -> Any:
    return sentry(traces_sample_rate=1.0, instrumenter="otel")


def test_transaction_roots() -> None:
    provider = TracerProvider()
    t = provider.get_tracer("test")
    with t.start_as_current_span("GET /x", kind=SpanKind.SERVER) as server:
        pass
    with t.start_as_current_span("job", kind=SpanKind.CONSUMER) as consumer:
        pass
    with t.start_as_current_span("connect") as internal:
        pass
    with t.start_as_current_span("work", attributes={TRANSACTION_ATTRIBUTE: True}) as marked:
        pass
    remote = trace.set_span_in_context(NonRecordingSpan(REMOTE))
    with t.start_as_current_span("continued", context=remote) as continued:
        pass
    assert is_transaction_root(server)  # type: ignore[arg-type]
    assert is_transaction_root(consumer)  # type: ignore[arg-type]
    assert is_transaction_root(marked)  # type: ignore[arg-type]
    assert is_transaction_root(continued)  # type: ignore[arg-type]
    assert not is_transaction_root(internal)  # type: ignore[arg-type]


def test_a_parentless_internal_span_is_not_a_transaction(sentry: Callable[..., Any]) -> None:
    captured = envelope_mode(sentry)
    provider, t = tracer()
    with t.start_as_current_span("startup db connect"), t.start_as_current_span("child"):
        pass
    provider.force_flush()
    sentry_sdk.flush(timeout=2)
    assert captured.of("transaction") == []


def test_a_server_span_is_a_transaction_with_its_children(sentry: Callable[..., Any]) -> None:
    captured = envelope_mode(sentry)
    provider, t = tracer()
    with t.start_as_current_span("GET /items", kind=SpanKind.SERVER), t.start_as_current_span(
        "load", attributes={"sentry.op": "db.query", "sentry.description": "load items"}
    ):
        pass
    provider.force_flush()
    sentry_sdk.flush(timeout=2)
    [transaction] = captured.of("transaction")
    assert transaction["transaction"] == "GET /items"
    [child] = transaction["spans"]
    assert (child["op"], child["description"]) == ("db.query", "load items")


def test_the_facades_transaction_keeps_its_op(sentry: Callable[..., Any]) -> None:
    captured = envelope_mode(sentry)
    provider, t = tracer()
    attributes = {TRANSACTION_ATTRIBUTE: True, "sentry.op": "task", "sentry.description": "nightly"}
    with t.start_as_current_span("nightly", attributes=attributes):
        pass
    provider.force_flush()
    sentry_sdk.flush(timeout=2)
    [transaction] = captured.of("transaction")
    assert transaction["contexts"]["trace"]["op"] == "task"


def test_children_of_a_skipped_root_are_skipped_too(sentry: Callable[..., Any]) -> None:
    captured = envelope_mode(sentry)
    provider, t = tracer()
    with (
        t.start_as_current_span("background"),
        t.start_as_current_span("GET inner", kind=SpanKind.CLIENT),
    ):
        pass
    provider.force_flush()
    sentry_sdk.flush(timeout=2)
    assert captured.of("transaction") == []


def test_envelope_spans_get_sentrys_names_and_the_transaction_its_asgi_tag(
    sentry: Callable[..., Any],
) -> None:
    from telemetry.tracing import derived_attributes

    captured = envelope_mode(sentry)
    provider = TracerProvider()
    provider.add_span_processor(envelope_span_processor(derived_attributes))
    t = provider.get_tracer("test")
    with (
        t.start_as_current_span("GET /items", kind=SpanKind.SERVER,
                                attributes={"http.method": "GET"}),
        t.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes={
            "db.system": "postgresql", "net.peer.name": "db", "net.peer.port": 5432}),
    ):  # fmt: skip
        pass
    provider.force_flush()
    sentry_sdk.flush(timeout=2)
    [transaction] = captured.of("transaction")
    assert transaction["tags"]["asgi.type"] == "http"
    [child] = transaction["spans"]
    assert (child["data"]["server.address"], child["data"]["server.port"]) == ("db", 5432)
