"""One OTLP encoding (and one gzip) of each batch for every OTLP/HTTP sink.

Protobuf-encoding spans costs more than anything else on the export path, and Jaeger and
Sentry's OTLP endpoint take the very same bytes. So each batch is scrubbed once and
encoded once (``otlp_encoding``: the bytes OpenTelemetry's encoder writes, several times
faster), then handed to one sender per sink. The body is gzipped once per batch by default
(a batch of 202 KB is 22 KB gzipped), and a batch whose encoding exceeds
``max_request_bytes`` is split, so no request grows past what receivers take (OTLP
receivers commonly refuse bodies above 4 MiB).
Each sender has its own thread and its own bounded queue, so a sink that is down,
black-holed or slow delays only itself: its queue fills, and what falls out of it is
counted as dropped for that sink alone.

Each request has a total deadline (the export timeout, retries included). requests'
timeout bounds each socket read, not the request: a sink that drips a byte before every
read timeout would hold a sender (and the shutdown waiting on it) for as long as it drips.
So the connection a request uses is known to its sender (``_InFlight``) and a timer cuts
it (``shutdown(SHUT_RDWR)`` on its socket) when the deadline passes; the blocked read
returns, the request fails, and the batch is counted as failed.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import requests
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from telemetry.shared import OTLPHttpTarget, PipelineCounters
from telemetry.tracing.health import SinkHealth
from telemetry.tracing.otlp_encoding import SpanEncoder

__all__ = ["FanOutExporter", "OTLPHttpTarget"]

logger = logging.getLogger("telemetry.pipeline")

_RETRYABLE = frozenset({429, 502, 503, 504})
#: Uncompressed bytes per request; receivers limit the decoded size too.
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: Fast levels compress OTLP nearly as well as 9 at a fraction of the CPU.
_GZIP_LEVEL = 5
_BACKOFF_S = (0.5, 1.0)


class _InFlight:
    """The connection a sender's request is using right now, so that a timer can cut it
    at the request's deadline (see the module docstring)."""

    def __init__(self) -> None:
        self.connection: Any = None
        #: The deadline passed: a connection tracked from now on is cut as soon as it has
        #: a socket (the timer may fire between two connections).
        self.expired = False
        self.cuts = 0

    def start(self) -> None:
        self.connection = None
        self.expired = False

    def cut(self) -> None:
        self.expired = True
        sock = getattr(self.connection, "sock", None)
        if sock is None:
            return
        # TLS in a TLS proxy tunnel: urllib3's SSLTransport wraps the socket.
        raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)
        if not isinstance(raw, socket.socket):
            return
        self.cuts += 1
        # Wakes a read blocked in another thread (close() alone would not, on Linux). The
        # plain socket's shutdown: ``SSLSocket.shutdown`` would also drop its TLS state
        # under the reading thread's feet; this way the TLS read just meets EOF.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(raw, socket.SHUT_RDWR)


#: The ``_InFlight`` of the sender running on this thread (one thread per sender).
_current = threading.local()


def _track(connection: Any) -> None:
    in_flight = getattr(_current, "in_flight", None)
    if in_flight is not None:
        in_flight.connection = connection


def _cut_if_expired() -> None:
    in_flight = getattr(_current, "in_flight", None)
    if in_flight is not None and in_flight.expired:
        in_flight.cut()


class _Tracked:
    """Mixed into urllib3's connection classes: the sender's deadline can cut the socket."""

    def connect(self) -> None:
        _track(self)
        super().connect()  # type: ignore[misc]
        _cut_if_expired()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self)
        super().request(*args, **kwargs)  # type: ignore[misc]
        _cut_if_expired()


class _TrackedHTTPConnection(_Tracked, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_Tracked, HTTPSConnection):
    pass


class _TrackedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


_TRACKED_POOLS = {"http": _TrackedHTTPConnectionPool, "https": _TrackedHTTPSConnectionPool}


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections the sender's deadline timer can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _TRACKED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools are urllib3's own
            manager.pool_classes_by_scheme = _TRACKED_POOLS
        return manager


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
        self.in_flight = _InFlight()
        self.session = requests.Session()
        adapter = _DeadlineAdapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
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
        _current.in_flight = self.in_flight
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
            if time.monotonic() >= deadline:
                break
            status = self._send_within(body, deadline)
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

    def _send_within(self, body: bytes, deadline: float) -> int | None:
        """One post that ends by ``deadline``, however slowly the sink answers."""
        self.in_flight.start()
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), self.in_flight.cut)
        timer.daemon = True
        timer.start()
        try:
            status = self._send(body, max(0.1, deadline - time.monotonic()))
            # A cut answer is no answer, even if what was read parses: a status line cut
            # short ("HTTP/1.1 200 OK" without its CRLF) reads as a 200 with no headers.
            return None if self.in_flight.expired else status
        finally:
            timer.cancel()
            self.in_flight.connection = None

    def _send(self, body: bytes, timeout_s: float) -> int | None:
        try:
            # ``verify`` per request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE in the
            # environment override a session's ``verify``, and so the sink's own CA bundle.
            response = self.session.post(
                self.target.endpoint, data=body, timeout=timeout_s, verify=self.target.verify
            )
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
        if self._thread.is_alive():
            # Out of time: what is still queued is dropped (and counted), the request in
            # flight is cut, so the thread ends now rather than after every queued batch.
            with self._condition:
                lost = self._queued_spans
                self._queue.clear()
                self._queued_spans = 0
            if lost:
                self.health.dropped(lost)
            self.in_flight.cut()
            self._thread.join(0.5)
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
        self.encoder = SpanEncoder()
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
        encoded = self.encoder.encode(spans)
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
