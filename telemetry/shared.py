"""Names more than one concern must spell the same way: span attributes one part sets and
another reads, the pipeline's own loggers, and the ASGI callable types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = [
    "KEEP_ATTRIBUTE",
    "PIPELINE_LOGGERS",
    "TRANSACTION_ATTRIBUTE",
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
]

#: Marks a trace a downstream tail sampler must keep (critical routes, reported errors).
KEEP_ATTRIBUTE = "telemetry.keep"
#: Marks a span the facade's ``start_transaction`` made: a Sentry transaction root.
TRANSACTION_ATTRIBUTE = "telemetry.transaction"

#: Loggers of the telemetry pipeline itself (fnmatch patterns): their failures must never
#: become Sentry events (an exporter failing against Sentry would otherwise report itself
#: to Sentry, forever).
PIPELINE_LOGGERS = ("opentelemetry*", "telemetry", "telemetry.*", "sentry_sdk*", "urllib3*")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
