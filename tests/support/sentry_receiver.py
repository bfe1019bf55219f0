"""An in-process server speaking Sentry's ingestion protocol, for tests with a real sentry-sdk.

It accepts envelopes (``POST /api/<project_id>/envelope/``), the legacy store endpoint
(``POST /api/<project_id>/store/``) and Sentry's OTLP traces path, decompresses bodies the way
Sentry's Relay does (sentry-sdk 2.75 sends brotli when ``brotli`` is importable, else gzip),
and keeps every item as parsed JSON by item type.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.net import BackgroundHTTPServer, decompress_body, poll_until
from tests.support.otlp_receiver import (
    JSON_CONTENT_TYPE,
    SENTRY_OTLP_PATH,
    ReceivedSpan,
    SpanStore,
    handle_otlp_traces_post,
    lowercase_headers,
    read_request_body,
    send_response_bytes,
)

ENVELOPE_PATH = re.compile(r"^/api/(?P<project_id>\d+)/envelope/?$")
STORE_PATH = re.compile(r"^/api/(?P<project_id>\d+)/store/?$")

# Item types whose payload is JSON even when the item header carries no content_type.
JSON_ITEM_TYPES = frozenset(
    {
        "event",
        "transaction",
        "profile",
        "profile_chunk",
        "client_report",
        "check_in",
        "session",
        "sessions",
        "user_report",
        "feedback",
        "statsd",
        "log",
        "span",
        "otel_log",
    }
)


@dataclass(frozen=True)
class EnvelopeItem:
    type: str
    headers: dict[str, Any]
    payload: bytes
    json: Any  # the parsed payload for JSON items, None for binary ones (attachments)


@dataclass(frozen=True)
class ReceivedEnvelope:
    project_id: int
    endpoint: str  # "envelope" or "store"
    http_headers: dict[str, str]
    sentry_key: str | None
    header: dict[str, Any]
    items: tuple[EnvelopeItem, ...]
    body: bytes  # decompressed


def _parse_item_payload(item_type: str, item_headers: dict[str, Any], payload: bytes) -> Any:
    content_type = str(item_headers.get("content_type", ""))
    if item_type in JSON_ITEM_TYPES or "json" in content_type:
        return json.loads(payload) if payload.strip() else None
    return None


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[EnvelopeItem]]:
    """Split an envelope into its header and items.

    An item with a ``length`` header has exactly that many payload bytes (which may contain
    newlines); without one, the payload runs to the next newline.
    """
    header_line, _, rest = body.partition(b"\n")
    envelope_header: dict[str, Any] = json.loads(header_line) if header_line.strip() else {}
    items: list[EnvelopeItem] = []
    position = 0
    while position < len(rest):
        line_end = rest.find(b"\n", position)
        if line_end == -1:
            line_end = len(rest)
        item_header_line = rest[position:line_end]
        position = line_end + 1
        if not item_header_line.strip():
            continue
        item_headers: dict[str, Any] = json.loads(item_header_line)
        length = item_headers.get("length")
        if length is None:
            payload_end = rest.find(b"\n", position)
            if payload_end == -1:
                payload_end = len(rest)
            payload = rest[position:payload_end]
            position = payload_end + 1
        else:
            payload = rest[position : position + int(length)]
            position += int(length)
            if rest[position : position + 1] == b"\n":
                position += 1
        item_type = str(item_headers.get("type", ""))
        items.append(
            EnvelopeItem(
                type=item_type,
                headers=item_headers,
                payload=payload,
                json=_parse_item_payload(item_type, item_headers, payload),
            )
        )
    return envelope_header, items


def decode_store_body(body: bytes) -> dict[str, Any]:
    """The store endpoint takes JSON, or (old SDKs) base64 of zlib-deflated JSON."""
    stripped = body.strip()
    if not stripped.startswith(b"{"):
        stripped = zlib.decompress(base64.b64decode(stripped))
    event: dict[str, Any] = json.loads(stripped)
    return event


def sentry_key_from_request(headers: dict[str, str], path: str) -> str | None:
    """The DSN public key, from ``X-Sentry-Auth``/``Authorization`` or ``?sentry_key=``."""
    for header_name in ("x-sentry-auth", "authorization"):
        match = re.search(r"sentry_key=([^,\s]+)", headers.get(header_name, ""))
        if match:
            return match.group(1)
    query_keys = parse_qs(urlsplit(path).query).get("sentry_key")
    return query_keys[0] if query_keys else None


class _SentryRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: request lines on stderr would drown pytest's output."""

    def do_POST(self) -> None:
        receiver: SentryReceiver = self.server.owner  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        if SENTRY_OTLP_PATH.match(path):
            if receiver.otlp_enabled:
                handle_otlp_traces_post(self, receiver.otlp)
            else:
                read_request_body(self)
                send_response_bytes(self, 404, b'{"detail":"Not Found"}', JSON_CONTENT_TYPE)
            return
        envelope_match = ENVELOPE_PATH.match(path)
        store_match = STORE_PATH.match(path)
        if envelope_match is None and store_match is None:
            read_request_body(self)
            send_response_bytes(self, 404, b'{"detail":"Not Found"}', JSON_CONTENT_TYPE)
            return
        headers = lowercase_headers(self)
        raw = read_request_body(self)
        try:
            body = decompress_body(raw, headers.get("content-encoding"))
            if envelope_match is not None:
                project_id = int(envelope_match.group("project_id"))
                endpoint = "envelope"
                envelope_header, items = parse_envelope(body)
            else:
                assert store_match is not None
                project_id = int(store_match.group("project_id"))
                endpoint = "store"
                event = decode_store_body(body)
                envelope_header = {"event_id": event.get("event_id")}
                item_type = "transaction" if event.get("type") == "transaction" else "event"
                items = [EnvelopeItem(item_type, {"type": item_type}, body, event)]
        except Exception as error:  # malformed input is answered 400, as Relay does
            receiver.record_error(f"{self.path}: {error!r}")
            send_response_bytes(
                self, 400, json.dumps({"detail": str(error)}).encode(), "text/plain"
            )
            return
        receiver.record(
            ReceivedEnvelope(
                project_id=project_id,
                endpoint=endpoint,
                http_headers=headers,
                sentry_key=sentry_key_from_request(headers, self.path),
                header=envelope_header,
                items=tuple(items),
                body=body,
            )
        )
        event_id = envelope_header.get("event_id") or uuid.uuid4().hex
        send_response_bytes(self, 200, json.dumps({"id": event_id}).encode(), JSON_CONTENT_TYPE)


class SentryReceiver(BackgroundHTTPServer):
    """Sentry-protocol ingestion on 127.0.0.1; ``with SentryReceiver() as sentry: ...``.

    ``otlp_enabled=False`` answers 404 on Sentry's OTLP traces path, like a Sentry-compatible
    server (Bugsink, older self-hosted Sentry) that only takes envelopes.
    """

    def __init__(
        self, project_id: int = 1, public_key: str = "testpublickey", otlp_enabled: bool = True
    ) -> None:
        super().__init__(_SentryRequestHandler)
        self.project_id = project_id
        self.public_key = public_key
        self.otlp_enabled = otlp_enabled
        self.otlp = SpanStore()
        self._lock = threading.Lock()
        self._envelopes: list[ReceivedEnvelope] = []
        self._errors: list[str] = []

    @property
    def dsn(self) -> str:
        return f"http://{self.public_key}@127.0.0.1:{self.port}/{self.project_id}"

    @property
    def otlp_traces_endpoint(self) -> str:
        """The URL sentry-sdk's OTLP integration derives from ``dsn``."""
        return f"{self.url}/api/{self.project_id}/integration/otlp/v1/traces/"

    def record(self, envelope: ReceivedEnvelope) -> None:
        with self._lock:
            self._envelopes.append(envelope)

    def record_error(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    def envelopes(self) -> list[ReceivedEnvelope]:
        with self._lock:
            return list(self._envelopes)

    def errors(self) -> list[str]:
        """Requests that could not be parsed (each answered 400)."""
        with self._lock:
            return list(self._errors)

    def items(self, kind: str) -> list[Any]:
        """Parsed payloads of every received item of type ``kind`` (e.g. ``"client_report"``)."""
        return [
            item.json if item.json is not None else item.payload
            for envelope in self.envelopes()
            for item in envelope.items
            if item.type == kind
        ]

    def events(self) -> list[dict[str, Any]]:
        """Error (and message) events, from envelopes and from the store endpoint."""
        return [item for item in self.items("event") if isinstance(item, dict)]

    def transactions(self) -> list[dict[str, Any]]:
        return [item for item in self.items("transaction") if isinstance(item, dict)]

    def wait_for(
        self,
        kind: str,
        predicate: Callable[[Any], bool] = lambda item: True,
        timeout: float = 10.0,
        count: int = 1,
    ) -> list[Any]:
        """Wait until at least ``count`` items of type ``kind`` match; return all that match."""

        def matching() -> list[Any] | None:
            found = [item for item in self.items(kind) if predicate(item)]
            return found if len(found) >= count else None

        return poll_until(matching, timeout, describe=f"{count} matching {kind!r} item(s)")

    def otlp_spans(self) -> list[ReceivedSpan]:
        return self.otlp.spans()

    def wait_for_spans(
        self,
        predicate: Callable[[ReceivedSpan], bool] = lambda span: True,
        timeout: float = 10.0,
        count: int = 1,
    ) -> list[ReceivedSpan]:
        return self.otlp.wait_for_spans(predicate, timeout, count)

    def raw_bytes(self) -> bytes:
        """Every decompressed body received (envelopes, store and OTLP), for leak searches."""
        return b"\n".join(
            [envelope.body for envelope in self.envelopes()] + [self.otlp.raw_bytes()]
        )

    def clear(self) -> None:
        with self._lock:
            self._envelopes.clear()
            self._errors.clear()
        self.otlp.clear()
