"""Local sinks that count what the app's telemetry delivers.

Three listeners on 127.0.0.1, one asyncio loop (a minimal HTTP/1.1 server with keep-alive,
so thousands of envelopes a second cost the sink little):

* ``otlp``: OTLP/HTTP ``/v1/traces`` (Jaeger's role); decodes the protobuf
  ``ExportTraceServiceRequest`` and counts spans. ``GET /stats`` returns every count.
* ``sentry``: Sentry's envelope endpoint ``/api/<id>/envelope/`` (counts transactions, the
  spans inside them, error events and other items) and its OTLP path
  ``/api/<id>/integration/otlp/v1/traces`` (counts spans).
* ``blackhole``: accepts connections, reads whatever comes, never answers.

Run as a process (``python -m benchmarks.sinks``: prints its ports as one JSON line, serves
until SIGTERM) or in a thread (:meth:`SinkServer.start_in_thread`) for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import signal
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

__all__ = ["COUNT_KEYS", "SinkPorts", "SinkServer", "count_envelope", "count_otlp_spans"]

HOST = "127.0.0.1"
SENTRY_ENVELOPE = re.compile(r"^/api/\d+/envelope/?$")
SENTRY_STORE = re.compile(r"^/api/\d+/store/?$")
SENTRY_OTLP = re.compile(r"^/api/\d+/integration/otlp/v1/traces/?$")
OTLP_TRACES = "/v1/traces"

#: Every count a sink reports (all start at 0, so deltas are well defined).
COUNT_KEYS = (
    "otlp_requests",
    "otlp_spans",
    "sentry_otlp_requests",
    "sentry_otlp_spans",
    "envelopes",
    "transactions",
    "transaction_spans",
    "error_events",
    "other_items",
    "decode_errors",
    "blackhole_connections",
    "blackhole_bytes",
)

Response = tuple[int, str, bytes]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found"}
_EMPTY_OTLP_RESPONSE = ExportTraceServiceResponse().SerializeToString()


def decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli

        return bytes(brotli.decompress(body))
    raise ValueError(f"unsupported content encoding {encoding!r}")


def count_otlp_spans(body: bytes) -> int:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(
        len(scope_spans.spans)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
    )


def count_envelope(body: bytes) -> Counter[str]:
    """Count the items of a Sentry envelope: transactions (and their spans, the
    transaction's own root span included), error events, and anything else."""
    counts: Counter[str] = Counter()
    newline = body.find(b"\n")
    pos = len(body) if newline < 0 else newline + 1  # skip the envelope header
    while pos < len(body):
        end = body.find(b"\n", pos)
        end = len(body) if end < 0 else end
        header_line = body[pos:end].strip()
        pos = end + 1
        if not header_line:
            continue
        header = json.loads(header_line)
        length = header.get("length")
        if isinstance(length, int):
            payload = body[pos : pos + length]
            pos += length
            if body[pos : pos + 1] == b"\n":
                pos += 1
        else:
            end = body.find(b"\n", pos)
            end = len(body) if end < 0 else end
            payload = body[pos:end]
            pos = end + 1
        kind = header.get("type")
        if kind == "transaction":
            document = json.loads(payload)
            counts["transactions"] += 1
            counts["transaction_spans"] += 1 + len(document.get("spans") or [])
        elif kind == "event":
            counts["error_events"] += 1
        else:
            counts["other_items"] += 1
    return counts


@dataclass(frozen=True)
class SinkPorts:
    otlp: int
    sentry: int
    blackhole: int

    @property
    def otlp_url(self) -> str:
        return f"http://{HOST}:{self.otlp}"

    def sentry_dsn(self, port: int | None = None) -> str:
        return f"http://benchkey@{HOST}:{self.sentry if port is None else port}/1"


class SinkServer:
    """The three listeners and their counts (thread-safe to read)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter({key: 0 for key in COUNT_KEYS})
        self._servers: list[asyncio.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._held: set[asyncio.StreamWriter] = set()

    # -- counts -------------------------------------------------------------------------

    def add(self, counts: Counter[str] | dict[str, int]) -> None:
        with self._lock:
            self._counts.update(counts)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {key: int(self._counts[key]) for key in COUNT_KEYS}

    # -- request handling ---------------------------------------------------------------

    def handle_otlp(self, method: str, path: str, body: bytes) -> Response:
        if method == "GET" and path == "/stats":
            return 200, "application/json", json.dumps(self.counts()).encode()
        if method == "POST" and path == OTLP_TRACES:
            spans = count_otlp_spans(body)
            self.add({"otlp_requests": 1, "otlp_spans": spans})
            return 200, "application/x-protobuf", _EMPTY_OTLP_RESPONSE
        return 404, "text/plain", b"not found"

    def handle_sentry(self, method: str, path: str, body: bytes) -> Response:
        if method != "POST":
            return 404, "text/plain", b"not found"
        if SENTRY_OTLP.match(path):
            spans = count_otlp_spans(body)
            self.add({"sentry_otlp_requests": 1, "sentry_otlp_spans": spans})
            return 200, "application/x-protobuf", _EMPTY_OTLP_RESPONSE
        if SENTRY_ENVELOPE.match(path):
            counts = count_envelope(body)
            counts["envelopes"] += 1
            self.add(counts)
            return 200, "application/json", b"{}"
        if SENTRY_STORE.match(path):
            self.add({"error_events": 1})
            return 200, "application/json", b"{}"
        return 404, "text/plain", b"not found"

    async def _serve_http(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: Callable[[str, str, bytes], Response],
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await _read_chunked(reader)
                else:
                    body = await reader.readexactly(int(headers.get("content-length") or 0))
                path = target.split("?", 1)[0]
                try:
                    status, content_type, payload = handler(
                        method, path, decompress(body, headers.get("content-encoding", ""))
                    )
                except Exception as exc:  # a body we cannot decode is counted, not fatal
                    self.add({"decode_errors": 1})
                    status, content_type, payload = 400, "text/plain", repr(exc).encode()
                close = headers.get("connection", "").lower() == "close"
                writer.write(
                    (
                        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                        f"Content-Type: {content_type}\r\n"
                        f"Content-Length: {len(payload)}\r\n"
                        + ("Connection: close\r\n" if close else "")
                        + "\r\n"
                    ).encode("latin-1")
                    + payload
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _blackhole(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.add({"blackhole_connections": 1})
        self._held.add(writer)
        try:
            while chunk := await reader.read(65536):
                self.add({"blackhole_bytes": len(chunk)})
        except ConnectionError:
            pass
        finally:
            self._held.discard(writer)
            writer.close()

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> SinkPorts:
        self._loop = asyncio.get_running_loop()

        async def otlp(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._serve_http(r, w, self.handle_otlp)

        async def sentry(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._serve_http(r, w, self.handle_sentry)

        ports: list[int] = []
        for callback in (otlp, sentry, self._blackhole):
            server = await asyncio.start_server(callback, HOST, 0, backlog=1024)
            self._servers.append(server)
            ports.append(server.sockets[0].getsockname()[1])
        return SinkPorts(*ports)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._held):
            writer.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    def start_in_thread(self) -> SinkPorts:
        """Serve on a background thread's loop (for tests); :meth:`stop` ends it."""
        ready: list[SinkPorts] = []
        started = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            ready.append(loop.run_until_complete(self.start()))
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._thread = threading.Thread(target=run, name="bench-sinks", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("sinks did not start")
        return ready[0]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readline()


async def _main() -> None:
    sinks = SinkServer()
    ports = await sinks.start()
    print(json.dumps(ports.__dict__), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sinks.close()


def fetch_counts(ports: SinkPorts, timeout: float = 5.0) -> dict[str, int]:
    """The counts of a sink process, over its ``GET /stats``."""
    import urllib.request

    with urllib.request.urlopen(f"{ports.otlp_url}/stats", timeout=timeout) as response:
        data: dict[str, Any] = json.loads(response.read())
    return {key: int(data.get(key, 0)) for key in COUNT_KEYS}


if __name__ == "__main__":
    asyncio.run(_main())
    sys.exit(0)
