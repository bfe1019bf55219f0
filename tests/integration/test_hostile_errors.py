"""Exceptions that break whoever describes them (``__str__``/``__repr__`` raising, cause
cycles, a 10 MB message): still exactly one Sentry event per request, the app's own
exception type in it, and the server span marked ERROR with its exception event."""

from __future__ import annotations

import json

import pytest

from telemetry import TelemetrySettings
from tests.integration._service import call, running_service
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.sentry_receiver import SentryReceiver

EXPECTED_TYPE = {"unprintable": "UnprintableError", "cycle": "ValueError", "huge": "ValueError"}


@pytest.mark.parametrize("kind", sorted(EXPECTED_TYPE))
def test_hostile_exception_one_event_span_marked(
    kind: str,
    otlp_receiver: OTLPReceiver,
    sentry_receiver: SentryReceiver,
    postgres_url: str,
    redis_url: str,
) -> None:
    settings = TelemetrySettings(
        environment="staging",
        service_name="hostile-test",
        sentry_dsn=sentry_receiver.dsn,
        sentry_traces="off",
        otlp_endpoint=otlp_receiver.url,
    )
    name = "GET /api/v1/hostile/{kind}"
    with running_service(settings, postgres_url, redis_url) as (url, handle, _logs):
        status, _ = call("GET", f"{url}/api/v1/hostile/{kind}")
        assert status == 500
        handle.force_flush()
        [span] = otlp_receiver.wait_for_spans(lambda s: s.name == name)
        events = sentry_receiver.wait_for("event", lambda e: "exception" in e)
    # Nothing else arrives once the span is exported and flushed: exactly one event.
    assert len(sentry_receiver.items("event")) == 1, [
        e["exception"]["values"][-1]["type"] for e in sentry_receiver.items("event")
    ]
    [event] = events
    assert event["exception"]["values"][-1]["type"] == EXPECTED_TYPE[kind]
    assert event["contexts"]["trace"]["trace_id"] == span.trace_id
    assert span.status_code == "ERROR"
    [exception_event] = [e for e in span.events if e.name == "exception"]
    assert exception_event.attributes["exception.type"].endswith(EXPECTED_TYPE[kind])
    # bounded: a 10 MB message is not shipped (nor held) whole
    assert len(json.dumps(event)) < 1024 * 1024
    assert len(otlp_receiver.raw_bytes()) < 1024 * 1024
