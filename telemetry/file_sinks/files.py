"""Local file sinks: what the no-server demo writes instead of Sentry and Jaeger.

``SentryFileTransport`` appends every envelope item sentry-sdk would have sent as one JSON
line; ``OTLPJsonFileSpanExporter`` appends every export batch as one OTLP/JSON
``ExportTraceServiceRequest`` line. Both are safe to share: appends are serialised by a lock
within a process and by ``flock`` across processes (the demo's two services write the same
span file), and each line goes out in a single ``write`` on an ``O_APPEND`` descriptor so a
reader never sees half a line interleaved with another.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from sentry_sdk.envelope import Envelope, Item
from sentry_sdk.transport import Transport

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the in-process lock is all there is
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "SENTRY_EVENTS_FILE",
    "SPANS_FILE",
    "JsonLinesAppender",
    "OTLPJsonFileSpanExporter",
    "SentryFileTransport",
    "otlp_json",
]

#: File names inside ``TELEMETRY_FILE_SINK_DIR``.
SENTRY_EVENTS_FILE = "sentry-events.jsonl"
SPANS_FILE = "spans.otlp.jsonl"

# OTLP/JSON encodes these bytes fields as hex, not as the base64 of the generic protobuf JSON
# mapping (opentelemetry-proto's specification/otlp.md, "JSON Protobuf Encoding").
_HEX_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})


class JsonLinesAppender:
    """Appends JSON documents, one per line, to a file shared by threads and processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, documents: Sequence[Any]) -> None:
        if not documents:
            return
        data = "".join(
            json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
            for doc in documents
        ).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            finally:
                os.close(fd)  # closing also releases the flock


def _item_payload(item: Item) -> Any:
    if item.payload.json is not None:
        return item.payload.json
    raw = item.get_bytes()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        # Attachments and profile chunks may be binary; keep them lossless.
        return {"base64": base64.b64encode(raw).decode("ascii")}


class SentryFileTransport(Transport):
    """A sentry-sdk transport that appends each envelope item as a JSON line.

    Line format: ``{"type": <item type>, "headers": <item headers>, "envelope": <envelope
    headers>, "payload": <item payload>}``. Pass an instance as ``sentry_sdk.init(transport=)``;
    a DSN is not needed. ``on_sent(kind, count)`` reports written items by data category
    (``error``, ``transaction``, ...) so the caller can count them like sent events.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: dict[str, Any] | None = None,
        *,
        on_sent: Callable[[str, int], None] | None = None,
    ) -> None:
        super().__init__(options)
        self._appender = JsonLinesAppender(path)
        self._on_sent = on_sent

    @property
    def path(self) -> Path:
        return self._appender.path

    def capture_envelope(self, envelope: Envelope) -> None:
        headers = dict(envelope.headers)
        lines = [
            {
                "type": item.type,
                "headers": {k: v for k, v in item.headers.items() if k != "length"},
                "envelope": headers,
                "payload": _item_payload(item),
            }
            for item in envelope.items
        ]
        self._appender.append(lines)
        if self._on_sent is not None:
            for item in envelope.items:
                self._on_sent(item.data_category, 1)


def _hex_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                base64.b64decode(value).hex()
                if key in _HEX_ID_FIELDS and isinstance(value, str)
                else _hex_ids(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(value) for value in node]
    return node


def otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """The OTLP/JSON form of one ``ExportTraceServiceRequest`` for ``spans``.

    lowerCamelCase field names, enums as integers and hex trace/span ids, as OTLP/JSON
    receivers (the collector's ``otlpjsonfile``, Jaeger's JSON upload) read them.
    """
    message = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    converted: dict[str, Any] = _hex_ids(message)
    return converted


class OTLPJsonFileSpanExporter(SpanExporter):
    """An OTel ``SpanExporter`` that appends one OTLP/JSON request per export batch."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._appender = JsonLinesAppender(path)
        self._shut_down = False

    @property
    def path(self) -> Path:
        return self._appender.path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shut_down:
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            self._appender.append([otlp_json(spans)])
        except OSError:
            # Same contract as the network exporters: report the failure, never raise into
            # the batch processor's worker thread.
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._shut_down = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Every export is written and closed synchronously: nothing is ever buffered.
        return True
