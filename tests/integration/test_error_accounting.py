"""The 500's log line names the request's trace and the Sentry event that was really sent;
duplicates filtered on purpose are not counted as lost events."""

from __future__ import annotations

import re
import urllib.request

from telemetry import TelemetrySettings
from tests.integration._service import call, running_service
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.sentry_receiver import SentryReceiver


def metrics_text(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def dropped_errors(metrics: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(
            r'^telemetry_sentry_events_dropped_total\{[^}]*kind="error"[^}]*\} (\S+)$',
            metrics,
            re.MULTILINE,
        )
    )


def test_500_log_line_trace_id_event_id_and_no_false_drops(
    otlp_receiver: OTLPReceiver,
    sentry_receiver: SentryReceiver,
    postgres_url: str,
    redis_url: str,
) -> None:
    settings = TelemetrySettings(
        environment="staging",
        service_name="accounting-test",
        sentry_dsn=sentry_receiver.dsn,
        sentry_traces="otlp",
        otlp_endpoint=otlp_receiver.url,
    )
    with running_service(settings, postgres_url, redis_url) as (url, handle, logs):
        for _ in range(3):
            status, _ = call("GET", f"{url}/api/v1/crash")
            assert status == 500
        handle.force_flush()
        events = sentry_receiver.wait_for("event", lambda e: "exception" in e, count=3)
        metrics = metrics_text(url)
    assert len(sentry_receiver.items("event")) == 3  # one per request, no duplicates
    sent_ids = {e["event_id"] for e in events}
    trace_ids = {e["contexts"]["trace"]["trace_id"] for e in events}
    lines = [r for r in logs.records if r.getMessage().startswith("Exception in ASGI application")]
    assert len(lines) == 3
    for record in lines:
        assert getattr(record, "trace_id", "") in trace_ids
        assert getattr(record, "sentry_event_id", None) in sent_ids
    assert "telemetry_sentry_events_sent_total" in metrics  # the counters are there
    assert dropped_errors(metrics) == 0, metrics
