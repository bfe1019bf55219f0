"""A real Prometheus (exemplar storage on) scrapes an instrumented service: the exemplar of
a sampled request points at a trace the OTLP receiver got; an unsampled one leaves none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from telemetry import TelemetrySettings
from tests.integration._service import call, running_service
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.prometheus import Prometheus
from tests.support.sentry_receiver import SentryReceiver

SAMPLED_TRACE = "5bf92f3577b34da6a3ce929d0e0e4736"
UNSAMPLED_TRACE = "6cf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def test_exemplars_point_at_exported_traces_only(
    otlp_receiver: OTLPReceiver,
    sentry_receiver: SentryReceiver,
    prometheus_factory: Callable[..., Prometheus],
    postgres_url: str,
    redis_url: str,
) -> None:
    settings = TelemetrySettings(
        environment="staging",
        service_name="exemplar-test",
        sentry_dsn=sentry_receiver.dsn,
        otlp_endpoint=otlp_receiver.url,
    )
    with running_service(settings, postgres_url, redis_url) as (url, handle, _):
        target = url.removeprefix("http://")
        prometheus = prometheus_factory(targets=[target])
        prometheus.wait_for_targets_up(timeout=30)
        call("GET", f"{url}/api/v1/items/1", {"traceparent": f"00-{SAMPLED_TRACE}-{PARENT}-01"})
        call("GET", f"{url}/api/v1/items/2", {"traceparent": f"00-{UNSAMPLED_TRACE}-{PARENT}-00"})
        handle.force_flush()
        query = 'http_server_request_duration_seconds_bucket{service="exemplar-test"}'
        labels = prometheus.wait_for_exemplars(
            query, lambda ex: ex.get("trace_id") == SAMPLED_TRACE, timeout=30
        )
        exported = {s.trace_id for s in otlp_receiver.wait_for_spans(lambda s: True)}
        assert SAMPLED_TRACE in exported
        assert UNSAMPLED_TRACE not in exported
        every_exemplar: list[dict[str, Any]] = prometheus.exemplar_labels(
            '{__name__=~"http_server_.*", service="exemplar-test"}'
        )
        assert all(ex["trace_id"] in exported for ex in every_exemplar), every_exemplar
        assert not [ex for ex in every_exemplar if ex["trace_id"] == UNSAMPLED_TRACE]
        assert all(len(ex["span_id"]) == 16 for ex in labels)
        counted = prometheus.wait_for_query(
            'sum(http_server_requests_total{service="exemplar-test",'
            'route="/api/v1/items/{item_id}"})',
            lambda result: bool(result) and float(result[0]["value"][1]) >= 2,
        )
        assert counted
