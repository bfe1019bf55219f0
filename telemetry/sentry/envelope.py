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

from collections.abc import Callable, Mapping
from functools import cache, partial
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind

from telemetry.sentry.sdk_internals import envelope_processor_class
from telemetry.shared import TRANSACTION_ATTRIBUTE

__all__ = ["apply_sentry_op", "envelope_span_processor", "is_transaction_root"]


#: Attributes to add to a span under Sentry's names (``telemetry.tracing``'s conventions).
Derive = Callable[[ReadableSpan], Mapping[str, Any] | None]


def envelope_span_processor(derive: Derive | None = None) -> SpanProcessor:
    """A new envelope span processor (sentry-sdk is initialised with ``instrumenter=otel``);
    ``derive`` gives the span data that ``otlp`` mode adds on export."""
    return _processor_class(derive)()


@cache
def _processor_class(derive: Derive | None) -> type[SpanProcessor]:
    return envelope_processor_class(is_transaction_root, partial(apply_sentry_op, derive=derive))


def is_transaction_root(span: ReadableSpan) -> bool:
    """Whether a span without a local parent starts a Sentry transaction."""
    if span.kind in (SpanKind.SERVER, SpanKind.CONSUMER):
        return True
    if span.parent is not None and span.parent.is_remote:
        return True
    return bool((span.attributes or {}).get(TRANSACTION_ATTRIBUTE))


_TAGGED_ATTRIBUTES = ("redis.command", "redis.key", "redis.is_cluster", "db.operation")


def apply_sentry_op(
    sentry_span: Any, otel_span: ReadableSpan, derive: Derive | None = None
) -> None:
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
    for key, value in ((derive(otel_span) if derive else None) or {}).items():
        # Sentry's names for what the instrumentation said (server.address, url, ...), as
        # in otlp mode; scrubbed with the transaction.
        sentry_span.set_data(key, value)
    if otel_span.kind is SpanKind.SERVER and hasattr(sentry_span, "source"):
        # sentry-sdk's ASGI integration tags its transactions with the ASGI scope type.
        scheme = attributes.get("url.scheme") or attributes.get("http.scheme")
        sentry_span.set_tag("asgi.type", "websocket" if scheme in ("ws", "wss") else "http")
