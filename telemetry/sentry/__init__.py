"""The Sentry side: sentry-sdk for errors, the events' filters and transport, the per-request
scope, and the Sentry arm of the span fan-out (``otlp`` or ``envelope``)."""

from telemetry.sentry.asgi import RequestContextMiddleware, fork_request_scope
from telemetry.sentry.client import init_sentry, sentry_otlp_target
from telemetry.sentry.events import build_before_send, counting_transport

__all__ = [
    "RequestContextMiddleware",
    "build_before_send",
    "counting_transport",
    "fork_request_scope",
    "init_sentry",
    "sentry_otlp_target",
]
