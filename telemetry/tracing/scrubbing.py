"""Span scrubbing on the export path.

Span attributes cannot change after a span ends, so a span that holds a secret is copied
with its attributes, event attributes and status description scrubbed; a clean span (the
common case) passes through as the same object, uncopied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, SpanKind, Status
from opentelemetry.util.types import Attributes

from telemetry.scrubbing import ScrubbingPolicy
from telemetry.tracing.conventions import derived_attributes

__all__ = ["ScrubbingSpanExporter", "scrub_span"]


def scrub_span(policy: ScrubbingPolicy, span: ReadableSpan) -> ReadableSpan:
    """The span itself when clean; otherwise a scrubbed ``ReadableSpan`` copy."""
    # The end user's address goes unless PII is allowed; a sensitive route parameter
    # (``/reset-password/{token}``) is found through the route template and replaced in
    # every attribute of the span, its events and its status.
    drop = policy.client_ip_attributes(server_span=span.kind == SpanKind.SERVER)
    # Each of these properties builds a new proxy or tuple: read once. The attributes as a
    # plain dict: the proxy answers every lookup through BoundedAttributes' Python-level
    # Mapping methods, a missing key by raising KeyError inside.
    attributes, events, links = dict(span.attributes or {}), span.events, span.links
    secrets = policy.route_secrets(attributes)
    # Sentry's names for what the instrumentation already said (``conventions``): added
    # here, so they cost the request nothing and are scrubbed like every attribute.
    derived = derived_attributes(span, attributes)
    if derived is None:
        attrs = policy.scrub_attributes(attributes, drop=drop, secrets=secrets)
    else:
        merged = {**attributes, **derived}
        attrs = policy.scrub_attributes(merged, drop=drop, secrets=secrets)
        if attrs is None:
            attrs = merged  # our own dict, which scrub_attributes never changes
    new_events = [
        ev
        if (ev_attrs := policy.scrub_attributes(ev.attributes, secrets=secrets)) is None
        else Event(ev.name, ev_attrs, ev.timestamp)
        for ev in events
    ]
    new_links = [
        ln
        if (ln_attrs := policy.scrub_attributes(ln.attributes)) is None
        else Link(ln.context, ln_attrs)
        for ln in links
    ]
    name = policy.scrub_text(policy.redact(span.name, secrets))
    status = span.status
    if status.description:
        description = policy.scrub_text(policy.redact(status.description, secrets))
        if description is not status.description:
            status = Status(status.status_code, description)
    if (
        attrs is None
        and name is span.name
        and status is span.status
        and all(a is b for a, b in zip(new_events, events, strict=True))
        and all(a is b for a, b in zip(new_links, links, strict=True))
    ):
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_copied_attributes(span, attrs if attrs is not None else attributes),
        events=_copied_list(new_events, span.dropped_events),
        links=_copied_list(new_links, span.dropped_links),
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _copied_attributes(span: ReadableSpan, attributes: Attributes) -> Attributes:
    """The copy's attributes, with the count of those the original dropped.

    A dict of values ``BoundedAttributes`` keeps as they are (no limit nor truncation here)
    is what it would hold: the dict itself is used then, as cleaning every value again
    costs more than scrubbing the whole clean span (a server span is copied for the
    attributes derived on export)."""
    dropped = span.dropped_attributes
    if not dropped and isinstance(attributes, dict) and _kept_as_is(attributes):
        return attributes
    bounded = BoundedAttributes(None, attributes)
    bounded.dropped = dropped  # keep the counts the exporter reports
    return bounded


def _kept_as_is(attributes: dict[str, Any]) -> bool:
    # Scalars and tuples of strings come out of OpenTelemetry's attribute cleaning as they
    # went in, in every supported version; anything else (other sequences, mappings, bytes,
    # odd keys) is left to BoundedAttributes.
    for key, value in attributes.items():
        if type(key) is not str or not key:
            return False
        kind = type(value)
        if kind is str or kind is int or kind is float or kind is bool:
            continue
        if kind is not tuple or not all(type(item) is str for item in value):
            return False
    return True


def _copied_list(items: list[Any], dropped: int) -> Sequence[Any]:
    """Events or links of the copy; a ``BoundedList`` only to carry a count of dropped ones."""
    if not dropped:
        return tuple(items)  # what ReadableSpan.events/.links return either way
    bounded = BoundedList.from_seq(None, items)
    bounded.dropped = dropped
    return bounded


class ScrubbingSpanExporter(SpanExporter):
    """Wraps any ``SpanExporter`` (OTLP to Jaeger, OTLP to Sentry) and scrubs first.

    Span attributes cannot change after a span ends, so scrubbing belongs here, on the
    export path. Clean spans are passed through as they are; only spans that need a
    change are copied.
    """

    def __init__(self, wrapped: SpanExporter, policy: ScrubbingPolicy | None = None) -> None:
        self._wrapped = wrapped
        self._policy = policy if policy is not None else ScrubbingPolicy.default()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        scrubbed = [scrub_span(self._policy, span) for span in spans]
        if all(a is b for a, b in zip(scrubbed, spans, strict=True)):
            return self._wrapped.export(spans)
        return self._wrapped.export(scrubbed)

    def shutdown(self) -> None:
        self._wrapped.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._wrapped.force_flush(timeout_millis)
