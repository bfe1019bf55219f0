"""The Sentry arm of the fan-out in ``envelope`` mode: sentry-sdk's envelope span processor,
limited to what is a transaction for a user.

Left alone it makes every parentless OTel span a transaction: start-up DB connects,
scrapes, stray background work. Here only server/consumer spans, spans continuing a remote
caller and explicit ``start_transaction`` spans start a transaction; their descendants
become its child spans. The facade's ``sentry.op``/``sentry.description`` attributes become
the Sentry span's op and description. (In ``otlp`` mode the arm is one target of the
shared OTLP fan-out, see ``client.sentry_otlp_target``.)
"""

from __future__ import annotations

from functools import cache
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind

from telemetry.sentry.sdk_internals import envelope_processor_class
from telemetry.shared import TRANSACTION_ATTRIBUTE

__all__ = ["apply_sentry_op", "envelope_span_processor", "is_transaction_root"]


def envelope_span_processor() -> SpanProcessor:
    """A new envelope span processor (sentry-sdk is initialised with ``instrumenter=otel``)."""
    return _processor_class()()


@cache
def _processor_class() -> type[SpanProcessor]:
    return envelope_processor_class(is_transaction_root, apply_sentry_op)


def is_transaction_root(span: ReadableSpan) -> bool:
    """Whether a span without a local parent starts a Sentry transaction."""
    if span.kind in (SpanKind.SERVER, SpanKind.CONSUMER):
        return True
    if span.parent is not None and span.parent.is_remote:
        return True
    return bool((span.attributes or {}).get(TRANSACTION_ATTRIBUTE))


_TAGGED_ATTRIBUTES = ("redis.command", "redis.key", "redis.is_cluster", "db.operation")


def apply_sentry_op(sentry_span: Any, otel_span: ReadableSpan) -> None:
    """The facade's op and description win over what sentry-sdk inferred."""
    attributes = otel_span.attributes or {}
    op = attributes.get("sentry.op")
    if isinstance(op, str):
        sentry_span.op = op
    elif isinstance(operation := attributes.get("gen_ai.operation.name"), str) and operation:
        # What Relay derives for OTLP spans; envelope spans arrive with the span name as op,
        # which Sentry's AI views (filtering on gen_ai.* ops) would not find.
        sentry_span.op = f"gen_ai.{operation}"
    description = attributes.get("sentry.description")
    if isinstance(description, str):
        sentry_span.description = description
    for key in _TAGGED_ATTRIBUTES:
        value = attributes.get(key)
        if value is not None:
            # sentry-sdk's Redis integration sends these as tags, where Sentry searches them.
            sentry_span.set_tag(key, value)
    if attributes.get("http.route") is not None and hasattr(sentry_span, "source"):
        sentry_span.source = "route"  # the transaction is named after the route template
