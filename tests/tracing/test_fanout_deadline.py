"""The fan-out sender's total deadline per request, against a real slow-drip server:
requests' timeout bounds each read, so a sink that drips one byte per read would hold a
request (and a shutdown waiting on it) for as long as it drips. Counts first; the only
wall-clock assertions are upper bounds with generous slack."""

from __future__ import annotations

import logging
import time

import pytest

from telemetry.shared import OTLPHttpTarget
from telemetry.tracing import fanout
from tests.support.failing_sockets import slow_drip_server
from tests.support.net import poll_until
from tests.tracing.test_fanout_sender import Counters

#: Each read of the client returns within 0.1 s, far below any read timeout used here.
DRIP_S = 0.1


def sender_for(url: str, counters: Counters, timeout_s: float) -> fanout._Sender:
    return fanout._Sender(
        OTLPHttpTarget("jaeger", f"{url}/v1/traces"),
        counters,
        max_queued_spans=100,
        timeout_s=timeout_s,
        compression="none",
    )


@pytest.mark.parametrize("phase", ["head", "body"])
def test_a_slow_drip_sink_cannot_stretch_a_request_past_the_export_timeout(
    phase: str, caplog: pytest.LogCaptureFixture
) -> None:
    timeout_s = 1.0
    with slow_drip_server(DRIP_S, phase) as drip, caplog.at_level(logging.WARNING):
        counters = Counters()
        sender = sender_for(drip.url, counters, timeout_s)
        try:
            started = time.monotonic()
            for _ in range(2):
                sender.submit(b"batch", 3)
            assert sender.flush(deadline=started + 20), "the sender is stuck on the drip"
            elapsed = time.monotonic() - started
            # Each batch: one request, cut at its deadline, counted failed (no retry: the
            # deadline is spent), the next batch gets a deadline of its own.
            assert drip.requests == 2
            assert sender.in_flight.cuts == 2
            assert (counters.failed, counters.exported) == ([3, 3], [])
            assert 2 * timeout_s * 0.9 <= elapsed < 2 * timeout_s + 1.5, elapsed
            poll_until(lambda: drip.closed >= 2, 5, describe="the drip server to see both cuts")
        finally:
            sender.stop(time.monotonic() + 2)
    failing = [r for r in caplog.records if "telemetry_sink_failing sink=jaeger" in r.getMessage()]
    assert len(failing) == 1


def test_stop_at_its_deadline_cuts_the_request_and_counts_what_was_queued() -> None:
    with slow_drip_server(DRIP_S) as drip:
        counters = Counters()
        # An export timeout far beyond the stop deadline: stop must not wait for it.
        sender = sender_for(drip.url, counters, timeout_s=60.0)
        sender.submit(b"in-flight", 2)
        poll_until(lambda: drip.requests == 1, 5, describe="the first request at the drip")
        sender.submit(b"queued-1", 3)
        sender.submit(b"queued-2", 4)
        started = time.monotonic()
        sender.stop(started + 0.5)
        elapsed = time.monotonic() - started
        assert not sender._thread.is_alive()
        assert elapsed < 0.5 + 1.0, elapsed
        assert counters.dropped == [7], "the queued batches are dropped and counted"
        assert counters.failed == [2], "the batch in flight is cut and counted failed"
        assert drip.requests == 1
