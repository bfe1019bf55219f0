"""Sinks that are down, black-holed or slow never slow or break a request, memory stays
bounded, what could not be sent is counted in /metrics, shutdown is bounded, export
resumes when the sink comes back, and a failing sink is logged once."""

from __future__ import annotations

import logging
import resource
import statistics
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import pytest

from telemetry import TelemetrySettings
from tests.integration._service import call, running_service
from tests.support.failing_sockets import (
    Endpoint,
    blackhole_listener,
    refused_port,
    slow_drip_server,
    slow_http_server,
)
from tests.support.net import LOOPBACK, BackgroundHTTPServer, poll_until
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.sentry_receiver import SentryReceiver


@contextmanager
def slow_endpoint() -> Iterator[Endpoint]:
    with slow_http_server(5.0) as server:
        yield Endpoint(LOOPBACK, server.port)


FAILURES: dict[str, Any] = {
    "refused": refused_port,
    "blackholed": blackhole_listener,
    "slow": slow_endpoint,
}


def failing_settings(endpoint: Endpoint, **overrides: Any) -> TelemetrySettings:
    values: dict[str, Any] = {
        "environment": "staging",
        "service_name": "resilience-test",
        "otlp_endpoint": endpoint.url,
        "sentry_dsn": f"http://publickey@{endpoint.address}/1",
        "sentry_traces": "otlp",
        "span_queue_size": 256,
        "export_timeout_seconds": 2.0,
        "shutdown_timeout_seconds": 2.0,
    }
    values.update(overrides)
    return TelemetrySettings(**values)


def latencies(url: str, count: int, path: str = "/api/v1/items/1") -> list[float]:
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        status, _ = call("GET", url + path)
        timings.append(time.perf_counter() - started)
        assert status == 200
    return timings


def metric_value(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failing_sink_never_slows_requests_and_losses_are_counted(
    failure: str, postgres_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    make: AbstractContextManager[Endpoint] = FAILURES[failure]()
    with make as endpoint, caplog.at_level(logging.WARNING, logger="telemetry"):
        settings = failing_settings(endpoint)
        with running_service(settings, postgres_url, redis_url) as (url, handle, _):
            latencies(url, 20)  # warm-up: connections, first exports start failing
            timings = latencies(url, 300)
            errors = [call("GET", f"{url}/api/v1/crash")[0] for _ in range(30)]
            assert errors == [500] * 30
            p99 = statistics.quantiles(timings, n=100)[98]
            # Each request must not wait on a sink: the sink's own delay is >= 2 s.
            assert p99 < 0.5, f"p99 {p99:.3f}s with the sink {failure}"
            time.sleep(3)  # let the export threads meet the failure
            lost = sum(
                metric_value(url, f"telemetry_spans_{what}_total", sink="jaeger")
                for what in ("failed", "dropped")
            )
            assert lost > 0, "spans that could not be sent must be counted in /metrics"
            started = time.monotonic()
            handle.shutdown()
            assert time.monotonic() - started < 2 * settings.shutdown_timeout_seconds + 2
    failing_lines = [
        r for r in caplog.records if "telemetry_sink_failing sink=jaeger" in r.getMessage()
    ]
    assert len(failing_lines) <= 1, "a failing sink is reported once, not per batch"


def test_memory_stays_bounded_with_a_sink_down(postgres_url: str, redis_url: str) -> None:
    with refused_port() as endpoint:
        settings = failing_settings(endpoint, span_queue_size=128)
        with running_service(settings, postgres_url, redis_url) as (url, _, _):
            latencies(url, 300)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            latencies(url, 2000)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            assert metric_value(url, "telemetry_spans_failed_total", sink="jaeger") > 0
    grown_mb = (after - before) / 1024
    assert grown_mb < 40, f"RSS grew {grown_mb:.1f} MB over 2,000 requests with the sink down"


Server = TypeVar("Server", bound=BackgroundHTTPServer)


def on_port(server: Server, port: int) -> Server:
    """``server`` bound to ``port`` when started: the sink coming back where it was."""
    server.bind_port = port
    return server


def test_export_resumes_when_the_sink_comes_back(
    postgres_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with refused_port() as endpoint:
        settings = failing_settings(endpoint, sentry_traces="off")
    with (
        caplog.at_level(logging.WARNING, logger="telemetry"),
        running_service(settings, postgres_url, redis_url) as (url, handle, _),
    ):
        latencies(url, 5)
        handle.force_flush(3)
        assert metric_value(url, "telemetry_spans_failed_total", sink="jaeger") > 0
        with on_port(OTLPReceiver(), endpoint.port) as receiver:
            call("GET", f"{url}/api/v1/items/99")
            handle.force_flush(5)
            spans = receiver.wait_for_spans(lambda s: s.name.startswith("GET /api/v1/items"))
            assert spans
            assert metric_value(url, "telemetry_spans_exported_total", sink="jaeger") > 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("telemetry_sink_failing sink=jaeger" in m for m in messages) == 1
    assert sum("telemetry_sink_recovered sink=jaeger" in m for m in messages) == 1


def test_one_sink_black_holed_does_not_hold_back_the_other(
    otlp_receiver: OTLPReceiver, postgres_url: str, redis_url: str
) -> None:
    with blackhole_listener() as hole:
        settings = failing_settings(hole, otlp_endpoint=otlp_receiver.url)  # Sentry black-holed
        with running_service(settings, postgres_url, redis_url) as (url, handle, _):
            for i in range(5):
                call("GET", f"{url}/api/v1/items/{i}")
                started = time.monotonic()
                # Jaeger gets each batch while Sentry's sender waits on the black hole.
                handle.tracer_provider.force_flush(1000)
                otlp_receiver.wait_for_spans(
                    lambda s, i=i: (
                        s.name.startswith("GET /api/v1/items")
                        and s.attributes.get(
                            "http.target", s.attributes.get("url.path", "")
                        ).endswith(f"/{i}")
                    ),
                    timeout=3,
                )
                assert time.monotonic() - started < 3
            time.sleep(settings.export_timeout_seconds + 1)
            assert metric_value(url, "telemetry_spans_failed_total", sink="sentry") > 0
            assert metric_value(url, "telemetry_spans_exported_total", sink="jaeger") >= 5


def test_a_slow_drip_sink_cannot_stretch_exports_or_shutdown(
    postgres_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Jaeger, Sentry's OTLP endpoint and Sentry's envelopes all on a sink that answers one
    byte every 0.1 s (each read well within any read timeout): every export request ends at
    the export timeout, the shutdown at its own deadline, each failure is logged once."""
    with (
        slow_drip_server(0.1) as drip,
        caplog.at_level(logging.WARNING, logger="telemetry"),
    ):
        settings = failing_settings(drip, export_timeout_seconds=1.0, shutdown_timeout_seconds=3.0)
        with running_service(settings, postgres_url, redis_url) as (url, handle, _):
            latencies(url, 20)
            started = time.monotonic()
            # Batches leave every second; each request is cut at 1 s and counted failed.
            # Without a total deadline the first request would hold each sender for good.
            for sink in ("jaeger", "sentry"):
                poll_until(
                    lambda sink=sink: metric_value(url, "telemetry_spans_failed_total", sink=sink),
                    10,
                    describe=f"a failed export counted for {sink}",
                )
            first_failure_s = time.monotonic() - started
            latencies(url, 20)  # more batches queued behind the drip
            assert call("GET", f"{url}/api/v1/crash")[0] == 500  # an event for the drip too
            started = time.monotonic()
            handle.shutdown()
            shutdown_s = time.monotonic() - started
        cut = drip.requests
    messages = [r.getMessage() for r in caplog.records]
    # The spans step ends within the export timeout (each request cut, what is left queued
    # dropped), so it never times out; sentry-sdk's own transport, which has no total
    # deadline, may use what the spans step left, and is abandoned at the shutdown deadline.
    assert not [m for m in messages if "telemetry_shutdown_timeout step=spans" in m], messages
    for step in ("spans", "sentry"):
        assert sum(f"telemetry_shutdown_timeout step={step}" in m for m in messages) <= 1
    for sink in ("jaeger", "sentry"):
        assert sum(f"telemetry_sink_failing sink={sink}:" in m for m in messages) == 1, messages
    assert sum("telemetry_sink_failing sink=sentry-events:" in m for m in messages) <= 1
    assert cut >= 2
    assert first_failure_s < 1.0 + 1.0 + 3.0, first_failure_s  # batch delay + timeout + slack
    assert shutdown_s < settings.shutdown_timeout_seconds + 1.0, shutdown_s


def test_urllib3_retry_chatter_while_sentry_refuses_is_one_line_per_failure_period(
    postgres_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """sentry-sdk's transport retries each request 3 times through urllib3, which logs a
    ``Retrying`` warning each time: 3 lines per error event while Sentry refuses. They go
    to the pipeline's once-per-failure line instead; the lost events are still counted."""
    errors = 15
    with refused_port() as endpoint:
        settings = failing_settings(endpoint, sentry_traces="off")
    with (
        caplog.at_level(logging.WARNING),
        running_service(settings, postgres_url, redis_url) as (url, handle, _),
    ):
        for _ in range(errors):
            assert call("GET", f"{url}/api/v1/crash")[0] == 500
        lost = poll_until(
            lambda: (
                metric_value(
                    url,
                    "telemetry_sentry_events_dropped_total",
                    reason="network_error",
                    kind="error",
                )
                >= errors
            ),
            10,
            describe="every error event counted lost",
        )
        assert lost
        with on_port(SentryReceiver(), endpoint.port) as sentry:
            assert call("GET", f"{url}/api/v1/crash")[0] == 500
            handle.force_flush(5)
            sentry.wait_for("event")
            poll_until(
                lambda: any(
                    "telemetry_sink_recovered sink=sentry-events" in m for m in caplog.messages
                ),
                5,
                describe="the recovered line",
            )
    messages = [r.getMessage() for r in caplog.records]
    retrying = [m for m in messages if m.startswith("Retrying (")]
    assert retrying == [], f"{len(retrying)} urllib3 retry lines, e.g. {retrying[:1]}"
    failing = [m for m in messages if "telemetry_sink_failing sink=sentry-events" in m]
    assert len(failing) == 1, messages
    assert "Connection refused" in failing[0] or "NewConnectionError" in failing[0], failing
    assert sum("telemetry_sink_recovered sink=sentry-events" in m for m in messages) == 1
