"""Every reach into sentry-sdk's private attributes, in one place.

sentry-sdk offers no public hook for these; if a release renames one,
``tests/sentry/test_sdk_internals.py`` fails here instead of the Sentry side degrading
silently (requests sharing a scope, spans missing from transactions, events uncounted).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor
from sentry_sdk.transport import HttpTransport, Transport

__all__ = [
    "counting_transport_class",
    "envelope_processor_class",
    "recording_transport_class",
]


def envelope_processor_class(
    starts_transaction: Callable[[Any], bool],
    decorate: Callable[[Any, Any], None],
) -> type[SpanProcessor]:
    """sentry-sdk's envelope span processor, where ``starts_transaction(otel_span)`` says
    which parentless/remote-parent spans become transactions (their descendants join them)
    and ``decorate(sentry_span, otel_span)`` runs after sentry-sdk copied a span's data.

    Imported here, on first use: sentry-sdk's OTel processor module is deprecated and costs
    import time that only envelope mode should pay.
    """
    import sentry_sdk
    from opentelemetry.trace import format_span_id
    from sentry_sdk.integrations.opentelemetry.span_processor import (
        SentrySpanProcessor as SdkSentrySpanProcessor,
    )

    class SentrySpanProcessor(SdkSentrySpanProcessor):
        def __new__(cls) -> Any:
            # sentry-sdk's processor is a singleton kept in ``cls.instance``: a subclass would
            # inherit the base's instance (without these overrides) once anything made one.
            if "instance" not in cls.__dict__:
                setattr(cls, "instance", object.__new__(cls))  # noqa: B010
            return cls.__dict__["instance"]

        def on_start(self, otel_span: Any, parent_context: Any = None) -> None:
            parent = otel_span.parent
            if parent is None or parent.is_remote:
                if not starts_transaction(otel_span):
                    return
            elif format_span_id(parent.span_id) not in self.otel_span_map:
                return  # its transaction was never started: not ours
            super().on_start(otel_span, parent_context)

        def _update_span_with_otel_data(self, sentry_span: Any, otel_span: Any) -> None:
            super()._update_span_with_otel_data(sentry_span, otel_span)
            decorate(sentry_span, otel_span)

        def _update_transaction_with_otel_data(self, sentry_span: Any, otel_span: Any) -> None:
            super()._update_transaction_with_otel_data(sentry_span, otel_span)
            decorate(sentry_span, otel_span)

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            sentry_sdk.get_client().flush(timeout=timeout_millis / 1000)
            return True

    return SentrySpanProcessor


def counting_transport_class(
    on_sent: Callable[[str, int], None],
    on_lost: Callable[[str, str, int], None],
    base: type[Transport] = HttpTransport,
) -> type[Transport]:
    """A transport class reporting each envelope item the server accepted
    (``on_sent(kind, count)``) and each one sentry-sdk gave up on
    (``on_lost(kind, reason, count)``)."""

    class CountingTransport(base):  # type: ignore[valid-type,misc]
        def _handle_response(self, response: Any, envelope: Any) -> None:
            if envelope is not None and 200 <= response.status < 300:
                for item in envelope.items:
                    on_sent(item.data_category or item.type or "unknown", 1)
            super()._handle_response(response=response, envelope=envelope)

        def record_lost_event(
            self,
            reason: str,
            data_category: Any = None,
            item: Any = None,
            *,
            quantity: int = 1,
        ) -> None:
            kind = (item.data_category if item is not None else data_category) or "unknown"
            on_lost(str(kind), reason, quantity)
            super().record_lost_event(reason, data_category, item, quantity=quantity)

    return CountingTransport


def recording_transport_class(timeout_s: float) -> type[Transport]:
    """An HTTP transport that remembers each response status (``statuses``), network error
    (``errors``) and lost item (``lost``), so the outcome of ``telemetry doctor``'s test
    event is known instead of guessed from a silent flush."""

    class RecordingTransport(HttpTransport):
        TIMEOUT = math.ceil(timeout_s)  # urllib3's total timeout of one request

        def __init__(self, options: dict[str, Any]) -> None:
            super().__init__(options)
            self.statuses: list[int] = []
            self.errors: list[BaseException] = []
            self.lost: list[str] = []

        def _request(self, method: str, endpoint_type: Any, body: Any, headers: Any) -> Any:
            try:
                response = super()._request(method, endpoint_type, body, headers)
            except Exception as error:
                self.errors.append(error)
                raise
            self.statuses.append(response.status)
            return response

        def record_lost_event(
            self, reason: str, data_category: Any = None, item: Any = None, *, quantity: int = 1
        ) -> None:
            self.lost.append(reason)
            super().record_lost_event(reason, data_category, item, quantity=quantity)

    return RecordingTransport
