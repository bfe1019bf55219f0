"""The transport of error events: sentry-sdk's HTTP transport, with every item it sent or
lost counted in ``/metrics`` (``telemetry_sentry_events_sent_total`` / ``_dropped_total``)."""

from __future__ import annotations

from sentry_sdk.transport import HttpTransport, Transport

from telemetry.sentry.events import take_suppressed
from telemetry.sentry.sdk_internals import counting_transport_class
from telemetry.shared import SentryCounters

__all__ = ["counting_transport"]


def counting_transport(
    counters: SentryCounters, base: type[Transport] = HttpTransport
) -> type[Transport]:
    """A transport class that reports sent and lost envelope items to ``counters``."""
    return counting_transport_class(
        counters.sentry_event_sent, counters.sentry_event_dropped, base, deliberate=take_suppressed
    )
