"""One trace id across Sentry (events, OTLP spans, envelope transactions), Jaeger (OTLP)
and logs, with real PostgreSQL, Redis, uvicorn, an OTLP receiver, a Sentry protocol
receiver and a real Bugsink."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from telemetry import TelemetrySettings
from tests.integration._service import call, running_service
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan, descendants
from tests.support.sentry_receiver import SentryReceiver

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def settings_for(
    otlp: OTLPReceiver, sentry_dsn: str, mode: str = "otlp", **overrides: Any
) -> TelemetrySettings:
    values: dict[str, Any] = {
        "environment": "staging",
        "service_name": "bridge-test",
        "service_version": "1.2.3",
        "sentry_dsn": sentry_dsn,
        "sentry_traces": mode,
        "otlp_endpoint": otlp.url,
        "log_format": "json",
    }
    values.update(overrides)
    return TelemetrySettings(**values)


@pytest.fixture
def service(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver, postgres_url: str, redis_url: str
) -> Iterator[tuple[str, Any, Any]]:
    settings = settings_for(otlp_receiver, sentry_receiver.dsn)
    with running_service(settings, postgres_url, redis_url) as running:
        yield running


def whole_trace(receiver: Any, trace_id: str) -> list[ReceivedSpan]:
    """Every span of a trace once its server span (which ends last) has arrived: a flush
    that races the end of the server span can deliver the children first."""
    receiver.wait_for_spans(lambda s: s.trace_id == trace_id and s.kind == "SERVER")
    spans: list[ReceivedSpan] = [s for s in receiver_spans(receiver) if s.trace_id == trace_id]
    return spans


def receiver_spans(receiver: Any) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = (
        receiver.otlp_spans() if isinstance(receiver, SentryReceiver) else receiver.spans()
    )
    return spans


def server_span(spans: list[ReceivedSpan], trace_id: str) -> ReceivedSpan:
    return next(s for s in spans if s.trace_id == trace_id and s.kind == "SERVER")


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": f"00-{TRACE}-{PARENT}-01"},
        {"sentry-trace": f"{TRACE}-{PARENT}-1"},
    ],
    ids=["traceparent", "sentry-trace"],
)
def test_incoming_trace_is_continued_in_every_sink(
    service: tuple[str, Any, Any],
    otlp_receiver: OTLPReceiver,
    sentry_receiver: SentryReceiver,
    headers: dict[str, str],
) -> None:
    url, handle, logs = service
    status, _ = call("GET", f"{url}/api/v1/items/7", headers)
    assert status == 200
    handle.force_flush()

    jaeger = whole_trace(otlp_receiver, TRACE)
    sentry = whole_trace(sentry_receiver, TRACE)
    root = server_span(jaeger, TRACE)
    assert root.parent_span_id == PARENT
    assert root.name == "GET /api/v1/items/{item_id}"
    children = descendants(root, jaeger)
    kinds = {
        (c.attributes.get("db.system") or c.attributes.get("db.system.name")) for c in children
    }
    assert {"postgresql", "redis"} <= kinds, children
    assert {s.span_id for s in jaeger} == {s.span_id for s in sentry}
    assert root.resource_attributes["service.version"] == "1.2.3"
    assert root.resource_attributes["deployment.environment"] == "staging"
    assert all(
        r.request_headers.get("x-sentry-auth", "").startswith("Sentry sentry_key=") for r in sentry
    )
    assert [r.getMessage() for r in logs.for_trace(TRACE) if r.name == "service"] == [
        "reading item 7"
    ]
    assert not [r for r in logs.records if "Shutdown called" in r.getMessage()]


def test_unhandled_500_is_captured_inside_the_failing_span(
    service: tuple[str, Any, Any], otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver
) -> None:
    url, handle, logs = service
    status, _ = call("GET", f"{url}/api/v1/crash", {"x-user": "u-1"})
    assert status == 500
    handle.force_flush()
    [event] = sentry_receiver.wait_for("event", lambda e: "exception" in e)
    trace_context = event["contexts"]["trace"]
    spans = whole_trace(otlp_receiver, trace_context["trace_id"])
    root = server_span(spans, trace_context["trace_id"])
    failing = next(s for s in spans if s.name == "load context")
    assert failing.parent_span_id == root.span_id
    assert trace_context["span_id"] == failing.span_id
    assert root.status_code == "ERROR"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["exception"]["values"][-1]["mechanism"]["handled"] is False
    assert event["user"]["id"] == "u-1"
    assert event["tags"]["tenant_id"] == "acme"
    assert event["release"] == "bridge-test@1.2.3"
    assert event["environment"] == "staging"
    assert event["transaction"] == "/api/v1/crash"
    assert logs.for_trace(trace_context["trace_id"])


def test_handled_error_carries_context_on_that_event_only(
    service: tuple[str, Any, Any], otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver
) -> None:
    url, handle, _ = service
    first = call("POST", f"{url}/api/v1/handled", {"x-user": "u-2"})[1]["event_id"]
    call("GET", f"{url}/api/v1/crash")
    handle.force_flush()
    events = sentry_receiver.wait_for("event", count=2)
    handled = next(e for e in events if e["event_id"] == first)
    crashed = next(e for e in events if e["event_id"] != first)
    assert handled["contexts"]["context"] == {"order_id": "o-42", "action": "checkout"}
    assert "o-42" not in handled["exception"]["values"][0]["value"]
    assert "context" not in crashed["contexts"]
    assert "user" not in crashed, "user context leaked from one request into the next"
    spans = otlp_receiver.wait_for_spans(
        lambda s: s.trace_id == handled["contexts"]["trace"]["trace_id"]
    )
    root = server_span(spans, handled["contexts"]["trace"]["trace_id"])
    assert any(e.name == "exception" for e in root.events)


def test_cross_service_call_carries_agreeing_headers(
    service: tuple[str, Any, Any], otlp_receiver: OTLPReceiver
) -> None:
    url, handle, _ = service
    _, echoed = call(
        "GET",
        f"{url}/api/v1/call",
        {"traceparent": f"00-{TRACE}-{PARENT}-01", "baggage": "tenant=acme,plan=gold"},
    )
    handle.force_flush()
    _, _, client_span_id, _ = echoed["traceparent"].split("-")
    assert echoed["sentry-trace"] == f"{TRACE}-{client_span_id}-1"
    baggage = dict(item.split("=", 1) for item in echoed["baggage"].split(","))
    assert baggage["tenant"] == "acme" and baggage["plan"] == "gold"
    assert baggage["sentry-trace_id"] == TRACE
    otlp_receiver.wait_for_spans(lambda s: s.trace_id == TRACE and s.name == "GET /api/v1/call")
    spans = otlp_receiver.spans_for_trace(TRACE)
    client = next(s for s in spans if s.span_id == client_span_id)
    assert client.kind == "CLIENT"
    downstream = next(s for s in spans if s.kind == "SERVER" and s.parent_span_id == client_span_id)
    assert downstream.name == "GET /echo-headers"
    assert (
        client.parent_span_id
        == server_span([s for s in spans if s.name == "GET /api/v1/call"], TRACE).span_id
    )


def test_health_and_metrics_are_never_traced_nor_sent(
    service: tuple[str, Any, Any], otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver
) -> None:
    url, handle, _ = service
    assert call("GET", f"{url}/health/live")[0] == 200
    assert call("GET", f"{url}/metrics")[0] == 200
    assert call("GET", f"{url}/api/v1/items/not-a-number")[0] == 422
    assert call("GET", f"{url}/no/such/route")[0] == 404
    call("GET", f"{url}/api/v1/items/1")
    handle.force_flush()
    otlp_receiver.wait_for_spans(lambda s: s.name.startswith("GET /api/v1/items"))
    names = {s.name for s in otlp_receiver.spans()} | {s.name for s in sentry_receiver.otlp_spans()}
    assert not any("health" in n or "metrics" in n for n in names), names
    # Client errors are the caller's, not the application's: no error event for them.
    assert sentry_receiver.events() == []


def test_envelope_mode_sends_transactions_with_child_spans(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver, postgres_url: str, redis_url: str
) -> None:
    settings = settings_for(otlp_receiver, sentry_receiver.dsn, mode="envelope")
    with running_service(settings, postgres_url, redis_url) as (url, handle, _):
        call("GET", f"{url}/api/v1/items/3", {"traceparent": f"00-{TRACE}-{PARENT}-01"})
        call("GET", f"{url}/api/v1/crash")
        handle.force_flush()
        [transaction] = sentry_receiver.wait_for(
            "transaction", lambda t: t["contexts"]["trace"]["trace_id"] == TRACE
        )
        assert transaction["transaction"] == "GET /api/v1/items/{item_id}"
        assert transaction["contexts"]["trace"]["parent_span_id"] == PARENT
        ops = {span.get("op") for span in transaction["spans"]}
        assert "db" in ops
        [event] = sentry_receiver.wait_for("event", lambda e: "exception" in e)
        crash_trace = event["contexts"]["trace"]["trace_id"]
        otlp_receiver.wait_for_spans(lambda s: s.trace_id == crash_trace)
    # Only request transactions: no start-up connects, no scrapes.
    assert all(
        t["transaction"].startswith(("GET ", "POST ")) for t in sentry_receiver.transactions()
    )


def test_bugsink_stores_the_error_with_the_jaeger_trace_id(
    otlp_receiver: OTLPReceiver,
    bugsink: Any,
    postgres_url: str,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    project = bugsink.create_project()
    # Bugsink has no OTLP ingestion: the Sentry trace arm must switch itself off, once.
    settings = settings_for(otlp_receiver, project.dsn, mode="otlp")
    with (
        caplog.at_level(logging.WARNING, logger="telemetry"),
        running_service(settings, postgres_url, redis_url) as (url, handle, _),
    ):
        for _ in range(3):
            call("GET", f"{url}/api/v1/items/5")
        handle.force_flush()
        assert call("GET", f"{url}/api/v1/crash", {"x-user": "u-9"})[0] == 500
        handle.force_flush()
        stored = bugsink.wait_for_event(project, lambda e: e.trace_id is not None, timeout=20)
        spans = whole_trace(otlp_receiver, str(stored.trace_id))
        assert server_span(spans, str(stored.trace_id)).name == "GET /api/v1/crash"
    disabled = [r for r in caplog.records if "telemetry_sink_disabled" in r.getMessage()]
    assert len(disabled) == 1
    assert "TELEMETRY_SENTRY_TRACES" in disabled[0].getMessage()


def test_production_profile_samples_ten_percent_identically_and_keeps_every_error(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver, postgres_url: str, redis_url: str
) -> None:
    settings = settings_for(otlp_receiver, sentry_receiver.dsn, environment="production")
    requests_sent, errors_sent = 400, 20
    with running_service(settings, postgres_url, redis_url) as (url, handle, _):
        for i in range(requests_sent):
            call("GET", f"{url}/api/v1/items/{i}")
        for _ in range(errors_sent):
            call("GET", f"{url}/api/v1/crash")
        handle.force_flush()
        events = sentry_receiver.wait_for("event", lambda e: "exception" in e, count=errors_sent)
    jaeger_traces = {
        s.trace_id for s in otlp_receiver.spans() if s.name.startswith("GET /api/v1/items")
    }
    sentry_traces = {
        s.trace_id for s in sentry_receiver.otlp_spans() if s.name.startswith("GET /api/v1/items")
    }
    assert jaeger_traces == sentry_traces
    share = len(jaeger_traces) / requests_sent
    assert 0.04 <= share <= 0.18, share
    assert len(events) == errors_sent
    assert len({e["contexts"]["trace"]["trace_id"] for e in events}) == errors_sent
