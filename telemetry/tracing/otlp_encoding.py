"""OTLP/protobuf encoding of a batch of spans, written as bytes directly.

OpenTelemetry's encoder (``encode_spans``) builds a protobuf message object for every
span, attribute and value, then serializes the tree: about 50 µs a span here, the largest
cost of the whole export path. The same attributes come back span after span (the
release, the environment, the thread, the host, the route, the statement), so this encoder
writes the wire format itself and keeps the encoded bytes of each recent (key, value)
pair: an attribute seen before costs a dict lookup. The resource and each instrumentation
scope are encoded once.

The message is the one ``encode_spans`` builds (``tests/tracing/test_otlp_encoding.py``
parses both and compares them): same fields, same grouping by resource and scope, fields
in field-number order. A batch holding a value this encoder does not write itself (a
mapping, bytes, a list, an integer beyond 64 bits, a string that is not UTF-8
encodable...) goes to ``encode_spans`` whole, so whatever OpenTelemetry does with it
(including dropping and logging a value it cannot encode) is still what happens.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["SpanEncoder"]

#: Encoded attributes remembered; past this the memo starts over (unique values such as
#: URLs with ids would otherwise grow it for ever).
_MEMO_LIMIT = 4096
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
#: ``Span.flags``: SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, with ..._IS_REMOTE_MASK.
_FLAGS_LOCAL = b"\x85\x01" + _pack_fixed32(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _pack_fixed32(0x300)
_LINK_FLAGS_LOCAL = b"\x35" + _pack_fixed32(0x100)
_LINK_FLAGS_REMOTE = b"\x35" + _pack_fixed32(0x300)


class _Unsupported(Exception):
    """A value this encoder leaves to OpenTelemetry's."""


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message (its content), as ``_encode_value`` builds it: the oneof
    field is written even when it holds its type's default ("", 0, False)."""
    kind = type(value)
    if kind is str:
        return _field(b"\x0a", value.encode())
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Unsupported
        return b"\x18" + _varint(value if value >= 0 else value + (1 << 64))
    if kind is float:
        return b"\x21" + _pack_double(value)
    if kind is tuple:
        # ArrayValue {repeated AnyValue values = 1}; tuples are what OTel's attribute
        # cleaning leaves of a sequence.
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    raise _Unsupported


def _key_value(tag: bytes, key: str, value: Any) -> bytes:
    """One attribute as a ``KeyValue`` field of the message holding it."""
    if type(key) is not str:
        raise _Unsupported
    return _field(tag, _field(b"\x0a", key.encode()) + _field(b"\x12", _any_value(value)))


class SpanEncoder:
    """Encodes batches into an ``ExportTraceServiceRequest`` body; one per export thread
    (its memos are not locked: at worst two threads encode the same attribute twice)."""

    def __init__(self) -> None:
        self._attributes: dict[tuple[Any, ...], bytes] = {}
        #: Resources and scopes by identity (with the object, so the id stays its own):
        #: a Resource hashes by dumping its attributes to JSON, per lookup.
        self._resources: dict[int, tuple[Any, bytes]] = {}
        self._scopes: dict[int, tuple[Any, bytes]] = {}

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        try:
            return self._encode(spans)
        except _Unsupported:
            return encode_spans(spans).SerializeToString()
        except (UnicodeError, AttributeError, TypeError, ValueError, OverflowError):
            # Anything unexpected: OpenTelemetry's encoder, and its handling, decide.
            return encode_spans(spans).SerializeToString()

    def _encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        # Grouped as encode_spans groups them: resource, then scope, first seen first.
        groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
        for span in spans:
            resource = span.resource
            scope = span.instrumentation_scope or None
            group = groups.get(id(resource))
            if group is None:
                group = groups[id(resource)] = (resource, {})
            entry = group[1].get(id(scope))
            if entry is None:
                entry = group[1][id(scope)] = (scope, [])
            entry[1].append(self._span(span))
        if len(groups) > 1 or any(len(by_scope) > 1 for _, by_scope in groups.values()):
            groups = _merged_equal(groups)
        out = []
        for resource, by_scope in groups.values():
            scope_spans = []
            for scope, encoded in by_scope.values():
                content = self._scope(scope) + b"".join(_field(b"\x12", s) for s in encoded)
                if scope is not None and scope.schema_url:
                    content += _field(b"\x1a", scope.schema_url.encode())
                scope_spans.append(_field(b"\x12", content))
            content = self._resource(resource) + b"".join(scope_spans)
            if resource.schema_url:
                content += _field(b"\x1a", resource.schema_url.encode())
            out.append(_field(b"\x0a", content))
        return b"".join(out)

    def _resource(self, resource: Any) -> bytes:
        cached = self._resources.get(id(resource))
        if cached is not None and cached[0] is resource:
            return cached[1]
        encoded = _field(b"\x0a", self._attribute_fields(b"\x0a", resource.attributes))
        if len(self._resources) >= 64:
            self._resources.clear()
        self._resources[id(resource)] = (resource, encoded)
        return encoded

    def _scope(self, scope: Any) -> bytes:
        cached = self._scopes.get(id(scope))
        if cached is not None and cached[0] is scope:
            return cached[1]
        if scope is None:
            encoded = b"\x0a\x00"  # an empty InstrumentationScope, present
        else:
            content = b""
            if scope.name:
                content += _field(b"\x0a", scope.name.encode())
            if scope.version:
                content += _field(b"\x12", scope.version.encode())
            content += self._attribute_fields(b"\x1a", scope.attributes)
            encoded = _field(b"\x0a", content)
        if len(self._scopes) >= 1024:
            self._scopes.clear()
        self._scopes[id(scope)] = (scope, encoded)
        return encoded

    def _attribute_fields(self, tag: bytes, attributes: Any) -> bytes:
        if not attributes:
            return b""
        memo = self._attributes
        parts = []
        for key, value in attributes.items():
            kind = type(value)
            # The type is part of the memo key: True == 1 == 1.0 (and -0.0 == 0.0), yet
            # each encodes differently. Floats are cheap to encode and not remembered, nor
            # tuples of anything but strings.
            if kind is float or (kind is tuple and not all(type(v) is str for v in value)):
                parts.append(_key_value(tag, key, value))
                continue
            memo_key = (tag, key, kind, value)
            encoded = memo.get(memo_key)
            if encoded is None:
                encoded = _key_value(tag, key, value)
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                memo[memo_key] = encoded
            parts.append(encoded)
        return b"".join(parts)

    def _span(self, span: ReadableSpan) -> bytes:
        context = span.context
        parent = span.parent
        parts = [
            b"\x0a\x10",
            context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        trace_state = context.trace_state
        if trace_state:
            state = ",".join([f"{key}={value}" for key, value in trace_state.items()])
            parts.append(_field(b"\x1a", state.encode()))
        if parent:
            parts.append(b"\x22\x08")
            parts.append(parent.span_id.to_bytes(8, "big"))
        name = span.name
        if name:
            parts.append(_field(b"\x2a", name.encode()))
        parts.append(b"\x30" + _varint(span.kind.value + 1))
        start, end = span.start_time, span.end_time
        if start:
            parts.append(b"\x39" + _pack_fixed64(start))
        if end:
            parts.append(b"\x41" + _pack_fixed64(end))
        parts.append(self._attribute_fields(b"\x4a", span.attributes))
        if span.dropped_attributes:
            parts.append(b"\x50" + _varint(span.dropped_attributes))
        for event in span.events:
            content = b""
            if event.timestamp:
                content += b"\x09" + _pack_fixed64(event.timestamp)
            if event.name:
                content += _field(b"\x12", event.name.encode())
            content += self._attribute_fields(b"\x1a", event.attributes)
            if event.dropped_attributes:
                content += b"\x20" + _varint(event.dropped_attributes)
            parts.append(_field(b"\x5a", content))
        if span.dropped_events:
            parts.append(b"\x60" + _varint(span.dropped_events))
        for link in span.links:
            linked = link.context
            content = (
                b"\x0a\x10"
                + linked.trace_id.to_bytes(16, "big")
                + b"\x12\x08"
                + linked.span_id.to_bytes(8, "big")
                + self._attribute_fields(b"\x22", link.attributes)
            )
            if link.dropped_attributes:
                content += b"\x28" + _varint(link.dropped_attributes)
            content += _LINK_FLAGS_REMOTE if linked.is_remote else _LINK_FLAGS_LOCAL
            parts.append(_field(b"\x6a", content))
        if span.dropped_links:
            parts.append(b"\x70" + _varint(span.dropped_links))
        status = span.status
        # encode_spans always sets the status message, empty or not.
        content = _field(b"\x12", status.description.encode()) if status.description else b""
        code = status.status_code.value
        if code:
            content += b"\x18" + _varint(code)
        parts.append(_field(b"\x7a", content))
        parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
        return b"".join(parts)


def _merged_equal(
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]],
) -> dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]]:
    """Groups of equal resources (and, within one, of equal scopes) as one, as
    ``encode_spans`` groups by equality; the identity grouping is the common, cheap case."""
    merged: dict[Any, tuple[Any, dict[Any, tuple[Any, list[bytes]]]]] = {}
    for resource, by_scope in groups.values():
        target = merged.setdefault(resource, (resource, {}))[1]
        for scope, encoded in by_scope.values():
            target.setdefault(scope, (scope, []))[1].extend(encoded)
    return dict(enumerate(merged.values()))
