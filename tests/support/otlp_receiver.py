"""An in-process OTLP/HTTP trace receiver that decodes real OTLP protobuf and JSON.

It stands in for Jaeger's (or a collector's) ``/v1/traces`` and for Sentry's OTLP ingestion
path ``/api/<project_id>/integration/otlp/v1/traces/`` (sentry-sdk's
``EndpointType.OTLP_TRACES``), so tests can assert on exactly what an exporter put on the wire.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.support.net import BackgroundHTTPServer, decompress_body, poll_until

OTLP_TRACES_PATH = "/v1/traces"
# sentry-sdk builds "<scheme>://<host>/api/<project_id>/integration/otlp/v1/traces/".
SENTRY_OTLP_PATH = re.compile(r"^/api/(?P<project_id>\d+)/integration/otlp/v1/traces/?$")

PROTOBUF_CONTENT_TYPES = ("application/x-protobuf", "application/protobuf")
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    time_unix_nano: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedLink:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, with ids as lowercase hex and attribute values as plain Python."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str  # "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER" or "UNSPECIFIED"
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    status_code: str  # "UNSET", "OK" or "ERROR"
    status_message: str
    events: tuple[ReceivedEvent, ...]
    links: tuple[ReceivedLink, ...]
    trace_state: str
    resource_attributes: dict[str, Any]
    scope_name: str
    request_path: str
    request_headers: dict[str, str] = field(repr=False)

    @property
    def service_name(self) -> str | None:
        value = self.resource_attributes.get("service.name")
        return None if value is None else str(value)

    @property
    def is_root(self) -> bool:
        return self.parent_span_id is None


def descendants(root: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """Every span below ``root`` in ``spans``, children before their own children."""
    by_parent: dict[str | None, list[ReceivedSpan]] = {}
    for span in spans:
        by_parent.setdefault(span.parent_span_id, []).append(span)
    found: list[ReceivedSpan] = []
    stack = [root.span_id]
    while stack:
        for child in by_parent.get(stack.pop(), []):
            found.append(child)
            stack.append(child.span_id)
    return found


@dataclass(frozen=True)
class ReceivedRequest:
    """An HTTP request as received; ``body`` is already decompressed."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


def any_value_to_python(value: AnyValue) -> Any:
    """Convert an OTLP ``AnyValue`` into str/bool/int/float/bytes/list/dict (or None)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_to_python(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return key_values_to_dict(value.kvlist_value.values)
    return getattr(value, kind)


def key_values_to_dict(key_values: Any) -> dict[str, Any]:
    pairs: list[KeyValue] = list(key_values)
    return {pair.key: any_value_to_python(pair.value) for pair in pairs}


def _hex_to_base64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode("ascii")


_JSON_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _json_ids_to_protobuf_json(document: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON spells trace and span ids as hex, protobuf's JSON mapping expects base64
    for bytes fields: rewrite the ids so ``json_format`` can parse the document."""
    for resource_spans in document.get("resourceSpans", document.get("resource_spans", [])):
        scope_spans_list = resource_spans.get("scopeSpans", resource_spans.get("scope_spans", []))
        for scope_spans in scope_spans_list:
            for span in scope_spans.get("spans", []):
                for key in _JSON_ID_KEYS:
                    if span.get(key):
                        span[key] = _hex_to_base64(span[key])
                for link in span.get("links", []):
                    for key in _JSON_ID_KEYS:
                        if link.get(key):
                            link[key] = _hex_to_base64(link[key])
    return document


def decode_export_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Parse an uncompressed OTLP trace export body (protobuf or OTLP/JSON)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    request = ExportTraceServiceRequest()
    if media_type in PROTOBUF_CONTENT_TYPES:
        request.ParseFromString(body)
    elif media_type == JSON_CONTENT_TYPE:
        document = _json_ids_to_protobuf_json(json.loads(body))
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    else:
        raise ValueError(f"unsupported OTLP content type {content_type!r}")
    return request


def _span_kind_name(span: Span) -> str:
    return Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_")


def _status_code_name(status: Status) -> str:
    return Status.StatusCode.Name(status.code).removeprefix("STATUS_CODE_")


def spans_from_export_request(
    request: ExportTraceServiceRequest, path: str, headers: Mapping[str, str]
) -> list[ReceivedSpan]:
    received: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource_attributes = key_values_to_dict(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                received.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=_span_kind_name(span),
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        attributes=key_values_to_dict(span.attributes),
                        status_code=_status_code_name(span.status),
                        status_message=span.status.message,
                        events=tuple(
                            ReceivedEvent(
                                name=event.name,
                                time_unix_nano=event.time_unix_nano,
                                attributes=key_values_to_dict(event.attributes),
                            )
                            for event in span.events
                        ),
                        links=tuple(
                            ReceivedLink(
                                trace_id=link.trace_id.hex(),
                                span_id=link.span_id.hex(),
                                attributes=key_values_to_dict(link.attributes),
                            )
                            for link in span.links
                        ),
                        trace_state=span.trace_state,
                        resource_attributes=resource_attributes,
                        scope_name=scope_spans.scope.name,
                        request_path=path,
                        request_headers=dict(headers),
                    )
                )
    return received


def read_request_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Read the body by Content-Length, or by chunks for ``Transfer-Encoding: chunked``."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size_line = handler.rfile.readline().split(b";", 1)[0].strip()
            size = int(size_line, 16)
            if size == 0:
                handler.rfile.readline()  # the empty line after the last chunk
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()  # CRLF after each chunk
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def lowercase_headers(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    return {name.lower(): value for name, value in handler.headers.items()}


def send_response_bytes(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class SpanStore:
    """Thread-safe storage of received OTLP requests and their decoded spans."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._requests: list[ReceivedRequest] = []
        self._decode_errors: list[str] = []

    def record(self, request: ReceivedRequest, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self._requests.append(request)
            self._spans.extend(spans)

    def record_decode_error(self, message: str) -> None:
        with self._lock:
            self._decode_errors.append(message)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def spans_for_trace(self, trace_id: str) -> list[ReceivedSpan]:
        wanted = trace_id.lower()
        return [span for span in self.spans() if span.trace_id == wanted]

    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def decode_errors(self) -> list[str]:
        with self._lock:
            return list(self._decode_errors)

    def raw_bytes(self) -> bytes:
        """Every request body received so far (decompressed), for byte-level leak searches."""
        return b"\n".join(request.body for request in self.requests())

    def wait_for_spans(
        self,
        predicate: Callable[[ReceivedSpan], bool] = lambda span: True,
        timeout: float = 10.0,
        count: int = 1,
    ) -> list[ReceivedSpan]:
        """Wait until at least ``count`` received spans match; return all that match."""

        def matching() -> list[ReceivedSpan] | None:
            found = [span for span in self.spans() if predicate(span)]
            return found if len(found) >= count else None

        return poll_until(matching, timeout, describe=f"{count} matching OTLP span(s)")

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._requests.clear()
            self._decode_errors.clear()


def handle_otlp_traces_post(handler: BaseHTTPRequestHandler, store: SpanStore) -> None:
    """Decode one OTLP trace export and answer it as an OTLP/HTTP server does."""
    headers = lowercase_headers(handler)
    content_type = headers.get("content-type", "")
    raw = read_request_body(handler)
    try:
        body = decompress_body(raw, headers.get("content-encoding"))
        export_request = decode_export_request(body, content_type)
    except Exception as error:  # any malformed input must become a 400, as a collector answers
        store.record_decode_error(f"{handler.path}: {error!r}")
        send_response_bytes(handler, 400, str(error).encode(), "text/plain")
        return
    store.record(
        ReceivedRequest("POST", handler.path, headers, body, 200),
        spans_from_export_request(export_request, handler.path, headers),
    )
    if content_type.lower().startswith(JSON_CONTENT_TYPE):
        send_response_bytes(handler, 200, b"{}", JSON_CONTENT_TYPE)
    else:
        response = ExportTraceServiceResponse().SerializeToString()
        send_response_bytes(handler, 200, response, PROTOBUF_CONTENT_TYPES[0])


class _OTLPRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the exporters' HTTP clients expect

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: request lines on stderr would drown pytest's output."""

    def do_POST(self) -> None:
        receiver: OTLPReceiver = self.server.owner  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if path == OTLP_TRACES_PATH:
            handle_otlp_traces_post(self, receiver.store)
            return
        if SENTRY_OTLP_PATH.match(path):
            if receiver.sentry_otlp_enabled:
                handle_otlp_traces_post(self, receiver.store)
            else:
                # A Sentry-compatible server without OTLP ingestion: keep the attempt visible.
                headers = lowercase_headers(self)
                body = read_request_body(self)
                receiver.record_rejected(ReceivedRequest("POST", self.path, headers, body, 404))
                send_response_bytes(self, 404, b'{"detail":"Not Found"}', JSON_CONTENT_TYPE)
            return
        read_request_body(self)
        send_response_bytes(self, 404, b"not an OTLP traces path", "text/plain")


class OTLPReceiver(BackgroundHTTPServer):
    """OTLP/HTTP trace receiver on 127.0.0.1; ``with OTLPReceiver() as receiver: ...``.

    ``sentry_otlp_enabled=False`` answers 404 on Sentry's OTLP path, like a Sentry-compatible
    server that only ingests envelopes.
    """

    def __init__(self, sentry_otlp_enabled: bool = True) -> None:
        super().__init__(_OTLPRequestHandler)
        self.sentry_otlp_enabled = sentry_otlp_enabled
        self.store = SpanStore()
        self._rejected_lock = threading.Lock()
        self._rejected: list[ReceivedRequest] = []

    @property
    def traces_endpoint(self) -> str:
        """Value for ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is by exporters)."""
        return f"{self.url}{OTLP_TRACES_PATH}"

    def sentry_dsn(self, project_id: int = 1, public_key: str = "otlppublickey") -> str:
        """A DSN whose OTLP traces URL (as sentry-sdk derives it) points at this receiver."""
        return f"http://{public_key}@127.0.0.1:{self.port}/{project_id}"

    def record_rejected(self, request: ReceivedRequest) -> None:
        with self._rejected_lock:
            self._rejected.append(request)

    def rejected_requests(self) -> list[ReceivedRequest]:
        """Requests answered 404 on the Sentry OTLP path (``sentry_otlp_enabled=False``)."""
        with self._rejected_lock:
            return list(self._rejected)

    def sentry_auth_headers(self) -> list[str]:
        """Every ``X-Sentry-Auth`` header received on accepted requests, in order."""
        return [
            request.headers["x-sentry-auth"]
            for request in self.store.requests()
            if "x-sentry-auth" in request.headers
        ]

    def spans(self) -> list[ReceivedSpan]:
        return self.store.spans()

    def spans_for_trace(self, trace_id: str) -> list[ReceivedSpan]:
        return self.store.spans_for_trace(trace_id)

    def requests(self) -> list[ReceivedRequest]:
        return self.store.requests()

    def decode_errors(self) -> list[str]:
        return self.store.decode_errors()

    def raw_bytes(self) -> bytes:
        return self.store.raw_bytes()

    def wait_for_spans(
        self,
        predicate: Callable[[ReceivedSpan], bool] = lambda span: True,
        timeout: float = 10.0,
        count: int = 1,
    ) -> list[ReceivedSpan]:
        return self.store.wait_for_spans(predicate, timeout, count)

    def clear(self) -> None:
        self.store.clear()
        with self._rejected_lock:
            self._rejected.clear()
