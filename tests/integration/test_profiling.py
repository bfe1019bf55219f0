"""Profiling under OpenTelemetry: sentry-sdk's transaction profiler does nothing in OTel
mode, so the bridge runs its continuous profiler at the profile's rate and stamps each span
with the profiler id; Sentry links the profile chunks to the trace through it."""

from __future__ import annotations

from telemetry import TelemetrySettings
from tests.integration._service import call, running_service
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.sentry_receiver import SentryReceiver


def test_profile_chunks_are_linked_to_the_spans_of_a_trace(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver, postgres_url: str, redis_url: str
) -> None:
    settings = TelemetrySettings(
        environment="staging",
        profiles_sample_rate=1.0,  # opt-in on Python 3.11 (a default of 100% elsewhere)
        service_name="profiling-test",
        sentry_dsn=sentry_receiver.dsn,
        otlp_endpoint=otlp_receiver.url,
    )
    with running_service(settings, postgres_url, redis_url) as (url, _, _):
        for i in range(20):
            call("GET", f"{url}/api/v1/items/{i}")
    [chunk] = sentry_receiver.wait_for("profile_chunk")
    profiler_id = chunk["profiler_id"]
    assert chunk["profile"]["samples"], "the chunk holds real stack samples"
    server_spans = [s for s in sentry_receiver.otlp_spans() if s.kind == "SERVER"]
    assert server_spans
    assert {s.attributes.get("profiler_id") for s in server_spans} == {profiler_id}
    jaeger = [s for s in otlp_receiver.spans() if s.kind == "SERVER"]
    assert {s.trace_id for s in jaeger} == {s.trace_id for s in server_spans}


def test_production_rate_off_means_no_profiler(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver, postgres_url: str, redis_url: str
) -> None:
    settings = TelemetrySettings(
        environment="staging",
        service_name="profiling-test",
        sentry_dsn=sentry_receiver.dsn,
        otlp_endpoint=otlp_receiver.url,
        profiles_sample_rate=0.0,
    )
    with running_service(settings, postgres_url, redis_url) as (url, handle, _):
        call("GET", f"{url}/api/v1/items/1")
        handle.force_flush()
        [span] = sentry_receiver.wait_for_spans(lambda s: s.kind == "SERVER")
    assert "profiler_id" not in span.attributes
    assert sentry_receiver.items("profile_chunk") == []
