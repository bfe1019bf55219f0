"""The request-level glue between OpenTelemetry's server span and Sentry.

Two ASGI layers:

* :class:`RequestScopeMiddleware` is the outermost layer of the app, outside OTel's server
  span and every application middleware. Each HTTP request gets its own Sentry isolation
  scope with no breadcrumbs of earlier work, so nothing one request sets (user, tags,
  contexts, breadcrumbs) reaches another's events, excluded routes and middleware that runs
  before routing included. It also counts the request as a release-health session
  (request mode, aggregated as sentry-sdk's ASGI integration does, with a lighter session
  object: ``sdk_internals.RequestSession``), keeps up to ``body_limit`` bytes of a JSON or
  form body for error events, and makes excluded routes (``/health/*``, ``/metrics``) send
  nothing at all.
* :class:`RequestContextMiddleware` captures an unhandled exception while the server span is
  still current, so the event carries its trace id and span id. sentry-sdk's Starlette
  middleware would run outside OTel's and capture after the span ended (DESIGN trap 3).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import sentry_sdk
from sentry_sdk.utils import AnnotatedValue, event_from_exception

from telemetry.sentry.events import was_reported
from telemetry.sentry.sdk_internals import (
    clear_transaction_name,
    end_request_session,
    install_task_capture,
    start_request_session,
)
from telemetry.shared import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_BODY_LIMIT",
    "RequestContextMiddleware",
    "RequestScopeMiddleware",
    "enable_task_capture",
]

MECHANISM = {"type": "telemetry.asgi", "handled": False}
#: sentry-sdk's ``max_request_body_size="medium"``.
DEFAULT_BODY_LIMIT = 10_000

_JSON = "json"
_FORM = "form"
_RAW = "raw"


class RequestScopeMiddleware:
    """Outermost layer: a fresh Sentry isolation scope, a session and the request data."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        is_excluded: Callable[[str], bool],
        sessions: bool = True,
        body_limit: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        self.app = app
        self.is_excluded = is_excluded
        self.sessions = sessions
        self.body_limit = body_limit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = sentry_sdk.get_client()
        if scope["type"] != "http" or not client.is_active():
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Task failures are captured once the loop's task factory is patched; the
            # lifespan does it first, but a server may run without lifespan events.
            self._loop = loop
            enable_task_capture()
        with sentry_sdk.isolation_scope() as isolation:
            isolation.clear_breadcrumbs()
            # Both forks start unnamed: the request's route names its events.
            clear_transaction_name(isolation)
            clear_transaction_name(sentry_sdk.get_current_scope())
            if self.is_excluded(scope.get("path", "")):
                isolation.add_event_processor(_drop_event)  # type: ignore[arg-type]
                await self.app(scope, receive, send)
                return
            body = _BodyRecorder.for_request(scope, self.body_limit)
            if body is not None:
                receive = body.wrap(receive)
            isolation.add_event_processor(_request_processor(scope, body))
            if not self.sessions:
                await self.app(scope, receive, send)
                return
            # sentry-sdk's track_session(isolation, session_mode="request"), cheaper.
            tracked = start_request_session(isolation, client)
            try:
                await self.app(scope, receive, send)
            finally:
                if tracked:
                    end_request_session(isolation)


class RequestContextMiddleware:
    """Inside the server span: an unhandled exception is captured while the span is current."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            client = sentry_sdk.get_client()
            if scope["type"] == "http" and client.is_active() and not was_reported(exc):
                event, hint = event_from_exception(
                    exc, client_options=client.options, mechanism=MECHANISM
                )
                sentry_sdk.capture_event(event, hint=hint)
            raise


def enable_task_capture() -> None:
    """Capture failures of asyncio tasks on the running loop, in the creating request's
    scope (idempotent per loop). No Sentry span per task: OpenTelemetry owns tracing."""
    from sentry_sdk.integrations.asyncio import enable_asyncio_integration

    install_task_capture(lambda: enable_asyncio_integration(task_spans=False))


def _drop_event(event: dict[str, Any], hint: dict[str, Any]) -> None:
    """Excluded routes (health checks, ``/metrics``) send nothing, errors included."""
    return None


class _BodyRecorder:
    """Keeps the first ``limit`` bytes of a JSON or form body as the app reads it.

    The body is copied as the app receives it (never read ahead of the app) and decoded
    only when an event is built, so a request without an error pays for a list append.
    """

    __slots__ = ("chunks", "kind", "limit", "over_limit", "size")

    def __init__(self, kind: str, limit: int) -> None:
        self.kind = kind
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.over_limit = False

    @classmethod
    def for_request(cls, scope: Scope, limit: int) -> _BodyRecorder | None:
        if limit <= 0 or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return None
        content_type, length = "", None
        for key, value in scope.get("headers", ()):
            if key == b"content-type":
                content_type = value.decode("latin-1").lower()
            elif key == b"content-length":
                length = value
        if "json" in content_type:
            kind = _JSON
        elif "application/x-www-form-urlencoded" in content_type:
            kind = _FORM
        elif content_type:
            kind = _RAW  # multipart, binary: never attached, as sentry-sdk does
        else:
            return None
        recorder = cls(kind, limit)
        if length is not None and length.isdigit() and int(length) > limit:
            recorder.over_limit = True
        return recorder

    def wrap(self, receive: Receive) -> Receive:
        async def receive_and_keep() -> Message:
            message = await receive()
            if (
                message.get("type") == "http.request"
                and self.kind != _RAW
                and not self.over_limit
            ):
                chunk = message.get("body", b"")
                self.size += len(chunk)
                if self.size > self.limit:
                    self.over_limit = True
                    self.chunks.clear()
                elif chunk:
                    self.chunks.append(chunk)
            return message

        return receive_and_keep

    def data(self) -> Any:
        """The body as sentry-sdk would attach it, or None when nothing was read."""
        if self.kind == _RAW:
            return AnnotatedValue.removed_because_raw_data()
        if self.over_limit:
            return AnnotatedValue.removed_because_over_size_limit()
        if not self.chunks:
            return None
        raw = b"".join(self.chunks)
        if self.kind == _JSON:
            try:
                return json.loads(raw)
            except ValueError:
                return AnnotatedValue.removed_because_raw_data()
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


def _request_processor(scope: Scope, body: _BodyRecorder | None) -> Any:
    def process(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
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
            if body is not None and "data" not in request:  # transactions too, as sentry-sdk
                data = body.data()
                if data is not None:
                    request["data"] = data
        trace = event.get("contexts", {}).get("trace")
        if isinstance(trace, dict) and event.get("type") != "transaction":
            # The request's server span is what the event happened in, as sentry-sdk's
            # trace context of a request says; an unhandled error made it a 500.
            if not trace.get("op"):
                trace["op"] = "http.server"
            if _is_unhandled(event):
                if not trace.get("status"):
                    trace["status"] = "internal_error"
                data = trace.setdefault("data", {})
                if isinstance(data, dict):
                    data.setdefault("http.response.status_code", 500)
        route = scope.get("route")
        template = getattr(route, "path", None)
        if template and event.get("type") != "transaction":
            if not event.get("transaction"):
                event["transaction"] = template
            if event["transaction"] == template and not event.get("transaction_info"):
                event["transaction_info"] = {"source": "route"}
        return event

    return process


def _is_unhandled(event: dict[str, Any]) -> bool:
    """Whether the event is the request's own unhandled error (captured below)."""
    values = event.get("exception", {}).get("values") or []
    mechanism = values[-1].get("mechanism") if values and isinstance(values[-1], dict) else None
    return isinstance(mechanism, dict) and mechanism.get("type") == MECHANISM["type"]


def _url(scope: Scope) -> str:
    scheme = scope.get("scheme", "http")
    server = scope.get("server") or ("localhost", None)
    host = next(
        (v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"),
        f"{server[0]}:{server[1]}" if server[1] else str(server[0]),
    )
    return f"{scheme}://{host}{scope.get('root_path', '')}{scope.get('path', '')}"
