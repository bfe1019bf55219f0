"""One OTLP encoding (and one gzip) of each batch for every OTLP/HTTP sink.

Protobuf-encoding spans costs more than anything else on the export path (about 150 µs a
span here, far above the scrubbing), and Jaeger and Sentry's OTLP endpoint take the very
same bytes. So each batch is scrubbed once and encoded once, then handed to one sender per
sink. The body is gzipped once per batch by default (a batch of 202 KB is 22 KB gzipped),
and a batch whose encoding exceeds ``max_request_bytes`` is split, so no request grows past
what receivers take (OTLP receivers commonly refuse bodies above 4 MiB).
Each sender has its own thread and its own bounded queue, so a sink that is down,
black-holed or slow delays only itself: its queue fills, and what falls out of it is
counted as dropped for that sink alone.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import requests
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry.shared import OTLPHttpTarget, PipelineCounters
from telemetry.tracing.health import SinkHealth

__all__ = ["FanOutExporter", "OTLPHttpTarget"]

logger = logging.getLogger("telemetry.pipeline")

_RETRYABLE = frozenset({429, 502, 503, 504})
#: Uncompressed bytes per request; receivers limit the decoded size too.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: Fast levels compress OTLP nearly as well as 9 at a fraction of the CPU.
_GZIP_LEVEL = 5
_BACKOFF_S = (0.5, 1.0)


class _Sender:
    """One sink's queue of encoded batches and the thread that posts them."""

    def __init__(
        self,
        target: OTLPHttpTarget,
        counters: PipelineCounters,
        *,
        max_queued_spans: int,
        timeout_s: float,
        compression: str,
    ) -> None:
        self.target = target
        self.health = SinkHealth(target.sink, counters)
        self.max_queued_spans = max_queued_spans
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers.update(
            {"Content-Type": "application/x-protobuf", **dict(target.headers)}
        )
        if compression == "gzip":
            self.session.headers["Content-Encoding"] = "gzip"
        self.session.verify = target.verify
        if target.client_cert is not None:
            self.session.cert = target.client_cert
        self._queue: deque[tuple[bytes, int]] = deque()
        self._queued_spans = 0
        self._busy = False
        self._stopping = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name=f"telemetry-otlp-{target.sink}", daemon=True
        )
        self._thread.start()

    def submit(self, body: bytes, span_count: int) -> None:
        if self.health.disabled_reason is not None:
            self.health.dropped(span_count)
            return
        with self._condition:
            self._queue.append((body, span_count))
            self._queued_spans += span_count
            # Oldest batches go first: the newest data is the most useful when a sink is back.
            while self._queued_spans > self.max_queued_spans and len(self._queue) > 1:
                _, lost = self._queue.popleft()
                self._queued_spans -= lost
                self.health.dropped(lost)
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._queue and not self._stopping:
                    self._condition.wait()
                if not self._queue:
                    return
                body, span_count = self._queue.popleft()
                self._queued_spans -= span_count
                self._busy = True
            try:
                self._post(body, span_count)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def _post(self, body: bytes, span_count: int) -> None:
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(len(_BACKOFF_S) + 1):
            status = self._send(body, max(0.1, deadline - time.monotonic()))
            if status is not None and 200 <= status < 300:
                self.health.succeeded(span_count)
                return
            if status in self.target.no_ingestion_statuses:
                self.health.disable(self.target.no_ingestion_message)
                self.health.dropped(span_count)
                return
            retryable = status is None or status in _RETRYABLE
            if not retryable or attempt == len(_BACKOFF_S) or self._stopping:
                break
            pause = _BACKOFF_S[attempt]
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        self.health.failed(span_count)

    def _send(self, body: bytes, timeout_s: float) -> int | None:
        try:
            response = self.session.post(self.target.endpoint, data=body, timeout=timeout_s)
        except requests.RequestException as exc:
            logger.debug("sink %s unreachable: %r", self.target.sink, exc)
            return None
        response.close()
        return response.status_code

    def flush(self, deadline: float) -> bool:
        with self._condition:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    def stop(self, deadline: float) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self.session.close()


class FanOutExporter(SpanExporter):
    """Scrub once, encode once, post the same bytes to every OTLP/HTTP sink."""

    def __init__(
        self,
        targets: Sequence[OTLPHttpTarget],
        counters: PipelineCounters,
        *,
        scrub: Callable[[ReadableSpan], ReadableSpan] | None,
        max_queued_spans: int,
        timeout_s: float,
        compression: str = "gzip",
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        if not targets:
            raise ValueError("FanOutExporter needs at least one target")
        self.scrub = scrub
        self.timeout_s = timeout_s
        self.compression = compression
        self.max_request_bytes = max_request_bytes
        self.senders = [
            _Sender(
                t,
                counters,
                max_queued_spans=max_queued_spans,
                timeout_s=timeout_s,
                compression=compression,
            )
            for t in targets
        ]

    @property
    def sinks(self) -> list[str]:
        return [sender.target.sink for sender in self.senders]

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.scrub is not None:
            spans = [self.scrub(span) for span in spans]
        for body, count in self._bodies(list(spans)):
            for sender in self.senders:
                sender.submit(body, count)
        # Delivery is each sender's business (counted per sink); the batch thread moves on.
        return SpanExportResult.SUCCESS

    def _bodies(self, spans: list[ReadableSpan]) -> list[tuple[bytes, int]]:
        """Encoded (and compressed) request bodies of at most ``max_request_bytes`` each:
        an oversized batch is halved until it fits (a single span is sent as it is)."""
        encoded = encode_spans(spans).SerializeToString()
        if len(encoded) > self.max_request_bytes and len(spans) > 1:
            middle = len(spans) // 2
            return self._bodies(spans[:middle]) + self._bodies(spans[middle:])
        if self.compression == "gzip":
            encoded = gzip.compress(encoded, compresslevel=_GZIP_LEVEL, mtime=0)
        return [(encoded, len(spans))]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        return all([sender.flush(deadline) for sender in self.senders])

    def shutdown(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        for sender in self.senders:
            sender.flush(deadline)
        for sender in self.senders:
            sender.stop(deadline)
