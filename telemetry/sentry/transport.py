"""The transport of error events: sentry-sdk's HTTP transport, with every item it sent or
lost counted in ``/metrics`` (``telemetry_sentry_events_sent_total`` / ``_dropped_total``),
and its failures logged once per failure period, urllib3's retry chatter included.

While Sentry refuses connections, urllib3 (under sentry-sdk's transport, 3 retries a
request) logs a ``Retrying (...) after connection broken by ...`` warning per retry: three
lines per error event, hundreds a minute under load. Those records, when they are logged
while this transport sends an envelope (on the sending thread), are taken off the log and
folded into the transport's ``FailureLog``: one ``telemetry_sink_failing
sink=sentry-events`` line (carrying the first retry's reason) when sending starts failing,
one ``telemetry_sink_recovered`` when the server accepts again. The lost events are counted
as before, in ``telemetry_sentry_events_dropped_total{reason="network_error"}``. urllib3
records of anything else (the application's own requests, another transport) are left
alone, so the filter stays on urllib3's logger once installed: it is inert outside this
transport's sends, including the last ones sentry-sdk makes after shutdown gave up on it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from sentry_sdk.transport import HttpTransport, Transport

from telemetry.sentry.events import take_suppressed
from telemetry.sentry.sdk_internals import counting_transport_class
from telemetry.shared import FailureLog, SentryCounters

__all__ = ["EVENTS_SINK", "RetryChatter", "counting_transport"]

logger = logging.getLogger("telemetry.pipeline")

#: The sink name of error events (and envelopes) in the failing/recovered log lines.
EVENTS_SINK = "sentry-events"
_RETRY_LOGGER = "urllib3.connectionpool"


class RetryChatter(logging.Filter):
    """On urllib3's connection-pool logger: urllib3's ``Retrying`` warnings logged while a
    counting transport sends (``routing(health)`` on the sending thread) go to its
    ``FailureLog`` (first cause in its one line) instead of the log. ``absorbed`` counts
    them."""

    def __init__(self) -> None:
        super().__init__()
        self.absorbed = 0
        self._sending = threading.local()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def routing(self, health: FailureLog) -> Iterator[None]:
        previous = getattr(self._sending, "health", None)
        self._sending.health = health
        try:
            yield
        finally:
            self._sending.health = previous

    def filter(self, record: logging.LogRecord) -> bool:
        health: FailureLog | None = getattr(self._sending, "health", None)
        if health is None or not str(record.msg).startswith("Retrying ("):
            return True
        with self._lock:
            self.absorbed += 1
        try:
            cause = record.getMessage()
        except Exception:
            cause = str(record.msg)
        health.failed(cause)
        return False


#: One filter for the process: installed by the transport in use, inert without one.
RETRY_CHATTER = RetryChatter()


def counting_transport(
    counters: SentryCounters, base: type[Transport] = HttpTransport
) -> type[Transport]:
    """A transport class that reports sent and lost envelope items to ``counters`` and logs
    its failures once per failure period (see the module docstring)."""
    health = FailureLog(
        EVENTS_SINK,
        "lost events are counted in telemetry_sentry_events_dropped_total",
        logger,
    )
    counting = counting_transport_class(
        counters.sentry_event_sent,
        counters.sentry_event_dropped,
        base,
        deliberate=take_suppressed,
        health=health,
        around_send=lambda: RETRY_CHATTER.routing(health),
    )

    class QuietRetriesTransport(counting):  # type: ignore[valid-type,misc]
        def __init__(self, options: Any = None) -> None:
            super().__init__(options)
            retry_logger = logging.getLogger(_RETRY_LOGGER)
            if RETRY_CHATTER not in retry_logger.filters:
                retry_logger.addFilter(RETRY_CHATTER)

    return QuietRetriesTransport
