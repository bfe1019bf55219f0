"""Span scrubbing on the export path.

Span attributes cannot change after a span ends, so a span that holds a secret is copied
with its attributes, event attributes and status description scrubbed; a clean span (the
common case) passes through as the same object, uncopied.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, SpanKind, Status

from telemetry.scrubbing import ScrubbingPolicy
from telemetry.tracing.conventions import derived_attributes

__all__ = ["ScrubbingSpanExporter", "scrub_span"]


def scrub_span(policy: ScrubbingPolicy, span: ReadableSpan) -> ReadableSpan:
    """The span itself when clean; otherwise a scrubbed ``ReadableSpan`` copy."""
    # The end user's address goes unless PII is allowed; a sensitive route parameter
    # (``/reset-password/{token}``) is found through the route template and replaced in
    # every attribute of the span, its events and its status.
    drop = policy.client_ip_attributes(server_span=span.kind == SpanKind.SERVER)
    # Each of these properties builds a new proxy or tuple: read once.
    attributes, events, links = span.attributes, span.events, span.links
    secrets = policy.route_secrets(attributes)
    # Sentry's names for what the instrumentation already said (``conventions``): added
    # here, so they cost the request nothing and are scrubbed like every attribute.
    derived = derived_attributes(span)
    if derived is None:
        attrs = policy.scrub_attributes(attributes, drop=drop, secrets=secrets)
    else:
        merged = {**(attributes or {}), **derived}
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
    bounded = BoundedAttributes(None, attrs if attrs is not None else attributes)
    bounded.dropped = span.dropped_attributes  # keep the counts the exporter reports
    event_list = BoundedList.from_seq(None, new_events)
    event_list.dropped = span.dropped_events
    link_list = BoundedList.from_seq(None, new_links)
    link_list.dropped = span.dropped_links
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=bounded,
        events=event_list,
        links=link_list,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


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
