"""Collector mode: every span goes to one OTLP endpoint (the Collector decides), the
in-process Sentry span arm is off, errors still go straight to Sentry with their trace id,
must-keep traces are marked, and exemplars only point at traces sure to be kept."""

from __future__ import annotations

import urllib.request

from telemetry import TelemetrySettings
from tests.integration._service import call, running_service
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.sentry_receiver import SentryReceiver


def openmetrics(url: str) -> str:
    request = urllib.request.Request(
        f"{url}/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body: str = response.read().decode()
    return body


def test_collector_mode_sends_everything_to_the_collector(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver, postgres_url: str, redis_url: str
) -> None:
    settings = TelemetrySettings(
        environment="production",  # head sampling would keep 10%; the Collector decides now
        service_name="collector-test",
        export_mode="collector",
        otlp_endpoint=otlp_receiver.url,
        sentry_dsn=sentry_receiver.dsn,
    )
    with running_service(settings, postgres_url, redis_url) as (url, handle, _):
        for i in range(40):
            assert call("GET", f"{url}/api/v1/items/{i}")[0] == 200
        assert call("POST", f"{url}/api/v1/agents/execute")[0] == 200
        assert call("GET", f"{url}/api/v1/crash")[0] == 500
        handle.force_flush()
        spans = otlp_receiver.wait_for_spans(lambda s: s.kind == "SERVER", count=42)
        [event] = sentry_receiver.wait_for("event", lambda e: "exception" in e)
        metrics_text = openmetrics(url)
    roots = [s for s in spans if s.kind == "SERVER"]
    assert len([s for s in roots if s.name.startswith("GET /api/v1/items")]) == 40
    critical = next(s for s in roots if s.name == "POST /api/v1/agents/execute")
    assert critical.attributes.get("telemetry.keep") is True
    crash_trace = event["contexts"]["trace"]["trace_id"]
    assert crash_trace in {s.trace_id for s in spans}
    assert sentry_receiver.otlp_spans() == [], "the Collector, not the service, feeds Sentry"
    exemplar_traces = {
        part.split('trace_id="', 1)[1][:32]
        for line in metrics_text.splitlines()
        if line.startswith("http_server_request") and 'trace_id="' in line
        for part in [line]
    }
    kept = {crash_trace, critical.trace_id}
    assert exemplar_traces and exemplar_traces <= kept, exemplar_traces
