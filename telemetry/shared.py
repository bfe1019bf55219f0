"""What more than one concern must spell the same way: span attributes one part sets and
another reads, the pipeline's own loggers, the ASGI callable types, the counters the export
pipeline reports to (``metrics`` implements them) and the description of an OTLP/HTTP span
sink (``sentry`` describes its own, ``tracing`` sends to it), and the once-per-failure log
line of a sink (``FailureLog``: spans and Sentry events fail and recover the same way)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "DISTRIBUTION",
    "EXCEPTION_TRACE_ATTRIBUTE",
    "KEEP_ATTRIBUTE",
    "PIPELINE_LOGGERS",
    "REPORTED_EVENT_ATTRIBUTE",
    "TRANSACTION_ATTRIBUTE",
    "ASGIApp",
    "FailureLog",
    "Message",
    "NullCounters",
    "OTLPHttpTarget",
    "PipelineCounters",
    "Receive",
    "Scope",
    "Send",
    "SentryCounters",
]

#: The name the library is installed under (``pip install otel-sentry-bridge``); the import
#: package is ``telemetry``, a name the package index gives to an unrelated project.
DISTRIBUTION = "otel-sentry-bridge"
#: Marks a trace a downstream tail sampler must keep (critical routes, reported errors).
KEEP_ATTRIBUTE = "telemetry.keep"
#: Marks a span the facade's ``start_transaction`` made: a Sentry transaction root.
TRANSACTION_ATTRIBUTE = "telemetry.transaction"

#: Set on an exception once an error event for it has left the process: the event's id.
#: Later captures of it are duplicates; a log line about it names that event.
REPORTED_EVENT_ATTRIBUTE = "__telemetry_reported__"
#: Set on an exception by the innermost request layer: ``(trace_id, span_id)`` of the
#: request's span, for log lines written after the span ended (uvicorn's 500 line).
EXCEPTION_TRACE_ATTRIBUTE = "__telemetry_trace__"

#: Loggers of the telemetry pipeline itself (fnmatch patterns): their failures must never
#: become Sentry events (an exporter failing against Sentry would otherwise report itself
#: to Sentry, forever).
PIPELINE_LOGGERS = ("opentelemetry*", "telemetry", "telemetry.*", "sentry_sdk*", "urllib3*")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class PipelineCounters(Protocol):
    """The self-metrics the span pipeline reports (implemented by ``telemetry.metrics``)."""

    def spans_exported(self, sink: str, count: int) -> None: ...
    def spans_failed(self, sink: str, count: int) -> None: ...
    def spans_dropped(self, sink: str, count: int) -> None: ...


class SentryCounters(PipelineCounters, Protocol):
    """The pipeline's counters plus what sentry-sdk sent or discarded."""

    def sentry_event_sent(self, kind: str, count: int = 1) -> None: ...
    def sentry_event_dropped(self, kind: str, reason: str, count: int = 1) -> None: ...


class NullCounters:
    """Counts nothing: the pipeline when metrics are off."""

    def spans_exported(self, sink: str, count: int = 1) -> None:
        return None

    def spans_failed(self, sink: str, count: int = 1) -> None:
        return None

    def spans_dropped(self, sink: str, count: int = 1) -> None:
        return None

    def sentry_event_sent(self, kind: str, count: int = 1) -> None:
        return None

    def sentry_event_dropped(self, kind: str, reason: str, count: int = 1) -> None:
        return None


@dataclass(frozen=True)
class OTLPHttpTarget:
    """Where one sink takes OTLP/HTTP protobuf, and what a refusal of OTLP means there."""

    sink: str
    endpoint: str
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Statuses meaning "this server has no OTLP ingestion": the sink is switched off with
    #: this message (one warning) instead of failing every batch.
    no_ingestion_statuses: frozenset[int] = frozenset()
    no_ingestion_message: str = ""
    #: TLS: a CA bundle path (``OTEL_EXPORTER_OTLP_CERTIFICATE``) or True for the system's.
    verify: str | bool = True
    #: mTLS client certificate and key paths (``OTEL_EXPORTER_OTLP_CLIENT_*``).
    client_cert: tuple[str, str] | None = None


class FailureLog:
    """One warning when a sink starts failing and one when it recovers, instead of one per
    failed request (or per retry): ``telemetry_sink_failing sink=<sink>: <counted> until it
    recovers`` and ``telemetry_sink_recovered sink=<sink>``. A flapping sink is reported
    failing at most once per ``quiet_period_s``. What failed is counted in ``/metrics`` by
    the caller; this is only the log line."""

    def __init__(
        self, sink: str, counted: str, logger: logging.Logger, quiet_period_s: float = 60.0
    ) -> None:
        self.sink = sink
        self.counted = counted
        self.logger = logger
        self.quiet_period_s = quiet_period_s
        self.failing = False
        self.reported_failing = False
        self.last_report = -float("inf")
        self._lock = threading.Lock()

    def failed(self, cause: str = "") -> None:
        if self.failing:  # the common case while a sink is down: no lock, no line
            return
        with self._lock:
            if self.failing:
                return
            self.failing = True
            now = time.monotonic()
            if self.reported_failing or now - self.last_report < self.quiet_period_s:
                return
            self.reported_failing = True
            self.last_report = now
        self.logger.warning(
            "telemetry_sink_failing sink=%s: %s until it recovers%s",
            self.sink,
            self.counted,
            f" ({cause})" if cause else "",
        )

    def succeeded(self) -> None:
        if not self.failing:
            return
        with self._lock:
            if not self.failing:
                return
            self.failing = False
            reported, self.reported_failing = self.reported_failing, False
        if reported:
            self.logger.warning("telemetry_sink_recovered sink=%s", self.sink)
