"""The request-level glue between OpenTelemetry's server span and Sentry.

Two pieces, both inside OTel's server span (FastAPI's instrumentation wraps the whole
stack):

* ``fork_request_scope`` runs as OTel's server request hook, before any application
  middleware: it gives the request its own Sentry scopes, so user, tags and context set
  while serving it stay on it.
* ``RequestContextMiddleware`` captures an unhandled exception while the server span is
  still current, so the event carries its trace id and span id. sentry-sdk's Starlette
  middleware would run outside OTel's and capture after the span ended (random trace id),
  and it costs time on every request, so it is not used.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.utils import event_from_exception

from telemetry.sentry.sdk_internals import set_isolation_scope
from telemetry.shared import ASGIApp, Receive, Scope, Send

__all__ = ["RequestContextMiddleware", "fork_request_scope"]

MECHANISM = {"type": "telemetry.asgi", "handled": False}


def fork_request_scope(span: Any, scope: Scope) -> None:
    """Give this request fresh Sentry scopes (OTel server request hook).

    Each ASGI request runs in its own asyncio task with its own copy of the context, so
    setting the scope context variable here (what ``sentry_sdk.isolation_scope()`` does on
    entry) cannot leak into another request, and needs no reset.
    """
    isolation = sentry_sdk.get_isolation_scope().fork()
    isolation.add_event_processor(_request_processor(scope))
    # Only the isolation scope: user, tags and context land there. The current scope is
    # left shared (forking it too doubled this hook's cost), as the facade's one-event
    # context uses a scope of its own.
    set_isolation_scope(isolation)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            client = sentry_sdk.get_client()
            if scope["type"] == "http" and client.is_active():
                event, hint = event_from_exception(
                    exc, client_options=client.options, mechanism=MECHANISM
                )
                sentry_sdk.capture_event(event, hint=hint)
            raise


def _request_processor(scope: Scope) -> Any:
    def process(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        if event.get("type") == "transaction":
            return event
        request = event.setdefault("request", {})
        if isinstance(request, dict):
            request.setdefault("method", scope.get("method"))
            request.setdefault("url", _url(scope))
            query = scope.get("query_string", b"")
            if query:
                request.setdefault("query_string", query.decode("latin-1"))
            request.setdefault(
                "headers",
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])},
            )
        route = scope.get("route")
        template = getattr(route, "path", None)
        if template and not event.get("transaction"):
            event["transaction"] = template
            event.setdefault("transaction_info", {"source": "route"})
        return event

    return process


def _url(scope: Scope) -> str:
    scheme = scope.get("scheme", "http")
    server = scope.get("server") or ("localhost", None)
    host = next(
        (v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"),
        f"{server[0]}:{server[1]}" if server[1] else str(server[0]),
    )
    return f"{scheme}://{host}{scope.get('root_path', '')}{scope.get('path', '')}"
