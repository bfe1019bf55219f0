"""The per-request Sentry scope and the capture of unhandled errors inside the server span,
driven as plain ASGI calls (no server, no FastAPI instrumentation)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.sdk.trace import TracerProvider

from telemetry.sentry.asgi import RequestContextMiddleware, RequestScopeMiddleware
from telemetry.shared import Message, Receive, Scope, Send

TRACER = TracerProvider().get_tracer("test")


class Route:
    path = "/items/{item_id}"


def http_scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "server": ("testserver", 80),
        "root_path": "",
        "path": path,
        "query_string": b"q=1",
        "headers": headers or [(b"host", b"api.example")],
        "route": Route(),
    }


async def receive() -> Message:
    return {"type": "http.request", "body": b""}


async def send(message: Message) -> None:
    return None


def serve(app: Callable[[Scope, Receive, Send], Any], scope: Scope) -> None:
    """One request the way the bridge runs it: the request-scope layer outermost, then
    the server span current around the app, in the request's own task (and context)."""

    async def in_span(scope: Scope, receive: Receive, send: Send) -> None:
        with TRACER.start_as_current_span("GET /items/{item_id}"):
            await app(scope, receive, send)

    outermost = RequestScopeMiddleware(in_span, is_excluded=lambda path: path == "/health")
    asyncio.run(outermost(scope, receive, send))


def test_an_unhandled_error_is_captured_in_the_server_span(sentry: Callable[..., Any]) -> None:
    captured = sentry()

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        serve(RequestContextMiddleware(failing), http_scope("/items/7"))
    sentry_sdk.flush(timeout=2)
    [error] = captured.of("event")
    [value] = error["exception"]["values"]
    assert value["mechanism"] == {"type": "telemetry.asgi", "handled": False}
    assert error["transaction"] == "/items/{item_id}"
    assert error["request"]["url"] == "http://api.example/items/7"
    assert (error["request"]["method"], error["request"]["query_string"]) == ("GET", "q=1")


def test_errors_of_non_http_scopes_are_not_captured(sentry: Callable[..., Any]) -> None:
    captured = sentry()

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("lifespan")

    with pytest.raises(RuntimeError):
        asyncio.run(RequestContextMiddleware(failing)({"type": "lifespan"}, receive, send))
    sentry_sdk.flush(timeout=2)
    assert captured.of("event") == []


def test_each_request_has_its_own_user_and_tags(sentry: Callable[..., Any]) -> None:
    captured = sentry()

    def app_for(user: str) -> Callable[[Scope, Receive, Send], Any]:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            sentry_sdk.set_user({"id": user})
            sentry_sdk.set_tag("tenant", user)
            sentry_sdk.capture_message(f"hello {user}")

        return app

    serve(RequestContextMiddleware(app_for("alice")), http_scope("/items/1"))
    serve(RequestContextMiddleware(app_for("bob")), http_scope("/items/2"))
    sentry_sdk.capture_message("outside any request")
    sentry_sdk.flush(timeout=2)
    events = {e["message"]: e for e in captured.of("event")}
    assert events["hello alice"]["user"]["id"] == "alice"
    assert events["hello bob"]["tags"]["tenant"] == "bob"
    assert "user" not in events["outside any request"]
    assert "tenant" not in events["outside any request"].get("tags", {})


def test_an_error_in_an_excluded_route_sends_nothing(sentry: Callable[..., Any]) -> None:
    captured = sentry()

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        sentry_sdk.capture_message("from a health check")
        raise ValueError("health")

    with pytest.raises(ValueError):
        serve(RequestContextMiddleware(failing), http_scope("/health"))
    sentry_sdk.flush(timeout=2)
    assert captured.of("event") == []


def test_a_transaction_name_left_on_the_process_scope_does_not_name_request_events(
    sentry: Callable[..., Any],
) -> None:
    captured = sentry()
    sentry_sdk.get_current_scope().set_transaction_name("left-behind", source="custom")

    async def failing(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    try:
        with pytest.raises(ValueError):
            serve(RequestContextMiddleware(failing), http_scope("/items/7"))
        sentry_sdk.flush(timeout=2)
        [error] = captured.of("event")
        assert error["transaction"] == "/items/{item_id}"
    finally:
        sentry_sdk.get_current_scope().set_transaction_name("")
