"""Paced load with errors, against a healthy Sentry: no error event is ever lost, in either
trace mode, at 50 and 150 requests per second; transactions lost at load (envelope mode),
if any, are counted in /metrics.

Error events and transactions used to share sentry-sdk's one transport queue: at 50 req/s
in envelope mode 29 of 86 errors were dropped (``queue_overflow``) behind transactions,
and sentry-sdk's backpressure then down-sampled traces behind the OTel sampler's back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from telemetry import TelemetrySettings
from tests.integration._service import call, running_service
from tests.integration.test_resilience import metric_value
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.sentry_receiver import SentryReceiver

#: Every fifth request fails with an unhandled exception.
ERROR_EVERY = 5
#: Requests per run: the run is bounded by count, not by time.
REQUESTS = 300


def paced_load(url: str, rate: float, total: int) -> dict[str, int]:
    """``total`` requests started at ``rate`` per second (a client that does not wait for
    answers, as real traffic does not); returns counts by outcome."""
    outcome: dict[str, int] = {"ok": 0, "error": 0, "other": 0}
    lock = threading.Lock()

    def one(index: int) -> None:
        path = "/api/v1/crash" if index % ERROR_EVERY == 0 else "/api/v1/items/1"
        status, _ = call("GET", url + path)
        key = "ok" if status == 200 else "error" if status == 500 else "other"
        with lock:
            outcome[key] += 1

    interval = 1.0 / rate
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        for index in range(total):
            delay = start + index * interval - time.monotonic()
            if delay > 0:
                threading.Event().wait(delay)  # pacing the client, not waiting for a result
            pool.submit(one, index)
    return outcome


@pytest.mark.parametrize("mode", ["otlp", "envelope"])
@pytest.mark.parametrize("rate", [50, 150])
def test_no_error_event_lost_under_load(
    mode: str,
    rate: int,
    otlp_receiver: OTLPReceiver,
    sentry_receiver: SentryReceiver,
    postgres_url: str,
    redis_url: str,
) -> None:
    settings = TelemetrySettings(
        environment="staging",
        service_name="load-test",
        sentry_dsn=sentry_receiver.dsn,
        sentry_traces=mode,
        otlp_endpoint=otlp_receiver.url,
        profiles_sample_rate=0.0,
    )
    with running_service(settings, postgres_url, redis_url) as (url, handle, _logs):
        outcome = paced_load(url, rate, REQUESTS)
        assert outcome["error"] == REQUESTS // ERROR_EVERY, outcome
        handle.force_flush()
        sentry_receiver.wait_for(
            "event", lambda e: "exception" in e, count=outcome["error"], timeout=60
        )
        dropped: dict[str, Any] = {
            kind: metric_value(url, "telemetry_sentry_events_dropped_total", kind=kind)
            for kind in ("error", "transaction")
        }
        if mode == "envelope":
            transactions = len(
                [
                    t
                    for t in sentry_receiver.transactions()
                    if "/api/v1/" in t.get("transaction", "")
                ]
            )
            # Every request's transaction either arrived or is counted as lost.
            assert transactions + dropped["transaction"] >= REQUESTS, (transactions, dropped)
            reasons = {
                reason: metric_value(
                    url, "telemetry_sentry_events_dropped_total", kind="transaction", reason=reason
                )
                for reason in ("queue_overflow", "event_processor", "before_send", "network_error")
            }
            print(f"rate={rate} mode={mode} transactions={transactions} lost={reasons}")
    errors = [e for e in sentry_receiver.events() if "exception" in e]
    assert len(errors) == outcome["error"]  # none lost, none duplicated
    assert dropped["error"] == 0
