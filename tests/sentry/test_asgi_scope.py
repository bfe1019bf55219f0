"""The per-request Sentry scope and the capture of unhandled errors inside the server span,
driven as plain ASGI calls (no server, no FastAPI instrumentation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.sdk.trace import TracerProvider
from sentry_sdk.sessions import track_session

from telemetry.sentry.asgi import RequestContextMiddleware, RequestScopeMiddleware
from telemetry.sentry.sdk_internals import (
    RequestSession,
    end_request_session,
    start_request_session,
)
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


def test_two_requests_in_one_task_share_nothing(sentry: Callable[..., Any]) -> None:
    # As an httpx.ASGITransport or TestClient call runs the app: in the caller's task, one
    # request after the other, and the caller's own events after them.
    captured = sentry()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/items/1":
            sentry_sdk.set_user({"id": "first"})
            sentry_sdk.set_tag("leaky", "first")
            sentry_sdk.add_breadcrumb(message="from the first request")
        sentry_sdk.capture_message(f"in {scope['path']}")

    outermost = RequestScopeMiddleware(app, is_excluded=lambda path: False)

    async def caller() -> None:
        await outermost(http_scope("/items/1"), receive, send)
        await outermost(http_scope("/items/2"), receive, send)
        sentry_sdk.capture_message("the caller, after both")

    asyncio.run(caller())
    sentry_sdk.flush(timeout=2)
    events = {e["message"]: e for e in captured.of("event")}
    assert events["in /items/1"]["user"]["id"] == "first"
    for later in ("in /items/2", "the caller, after both"):
        event = events[later]
        assert "user" not in event and "leaky" not in event.get("tags", {}), later
        crumbs = [c.get("message") for c in event.get("breadcrumbs", {}).get("values", [])]
        assert "from the first request" not in crumbs, later
    assert "request" not in events["the caller, after both"]


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


class SdkSessions:
    """The reference: what the request layer did before, sentry-sdk's own request-mode
    session (``track_session``) in a fresh isolation scope."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Any]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with (
            sentry_sdk.isolation_scope() as isolation,
            track_session(isolation, session_mode="request"),
        ):
            await self.app(scope, receive, send)


async def outcome_app(scope: Scope, receive: Receive, send: Send) -> None:
    outcome = scope["path"].strip("/")
    if outcome == "user":
        sentry_sdk.set_user({"id": "u-1", "ip_address": "203.0.113.1"})
    elif outcome == "message":
        sentry_sdk.capture_message("not an error: the session stays ok")
    elif outcome == "errored":
        try:
            raise ValueError("handled")
        except ValueError as exc:
            sentry_sdk.capture_exception(exc)
    elif outcome == "twice":
        for _ in range(2):
            sentry_sdk.capture_exception(ValueError("handled twice"))
    elif outcome == "crashed":
        raise RuntimeError("unhandled: the request crashes")


OUTCOMES = ["ok"] * 5 + ["user", "message"] + ["errored"] * 3 + ["twice"] + ["crashed"] * 2


def session_aggregates(captured: Any, outermost: Callable[..., Any]) -> list[dict[str, Any]]:
    captured.items.clear()
    for outcome in OUTCOMES:
        app = outermost(RequestContextMiddleware(outcome_app))
        try:
            asyncio.run(app(http_scope(f"/{outcome}"), receive, send))
        except RuntimeError:
            assert outcome == "crashed"
    sentry_sdk.flush(timeout=2)
    sessions: list[dict[str, Any]] = captured.of("sessions")
    return sessions


def test_request_sessions_aggregate_as_sentry_sdks_own(sentry: Callable[..., Any]) -> None:
    captured = sentry(release="shop@1.2.3", environment="staging")

    def ours(app: Any) -> Any:
        return RequestScopeMiddleware(app, is_excluded=lambda path: False)

    for _ in range(3):  # both runs in one minute: their buckets must be the same
        minute = time.time() // 60
        bridge = session_aggregates(captured, ours)
        reference = session_aggregates(captured, SdkSessions)
        if time.time() // 60 == minute:
            break
    assert bridge == reference
    [item] = bridge
    assert item["attrs"] == {"release": "shop@1.2.3", "environment": "staging"}
    [bucket] = item["aggregates"]
    assert {k: v for k, v in bucket.items() if k != "started"} == {
        "exited": 7,
        "errored": 4,
        "crashed": 2,
    }
    assert bucket["started"].endswith(":00.000000Z")


def test_a_request_session_is_a_whole_session_for_whoever_asks(
    sentry: Callable[..., Any],
) -> None:
    sentry(release="shop@1.2.3")
    scope = sentry_sdk.get_isolation_scope().fork()
    scope.set_user({"id": "u-9"})
    assert start_request_session(scope, sentry_sdk.get_client())
    session = scope._session
    assert isinstance(session, RequestSession) and session.did == "u-9"
    as_json = session.to_json()  # what an application-mode session would send
    assert as_json["status"] == "ok" and as_json["did"] == "u-9"
    assert len(as_json["sid"]) == 36 and as_json["started"] <= as_json["timestamp"]
    assert session.truncated_started == session.started.replace(second=0, microsecond=0)
    end_request_session(scope)
    assert scope._session is None and session.status == "exited"


def test_sessions_off_for_the_scope_start_none(sentry: Callable[..., Any]) -> None:
    sentry(release="shop@1.2.3")
    scope = sentry_sdk.get_isolation_scope().fork()
    scope.stop_auto_session_tracking()
    assert not start_request_session(scope, sentry_sdk.get_client())
    assert scope._session is None


class RequestResponseCycle:
    """Named like uvicorn's per-request object: its ``run_asgi`` is the request's task."""

    def __init__(self, done: list[str]) -> None:
        self.done = done

    async def run_asgi(self) -> None:
        self.done.append(asyncio.current_task().get_name())  # type: ignore[union-attr]


def test_task_capture_leaves_the_servers_request_tasks_plain(sentry: Callable[..., Any]) -> None:
    from telemetry.sentry.asgi import enable_task_capture

    captured = sentry()
    names: list[str] = []

    async def fail() -> None:
        raise LookupError("background task failed")

    async def main() -> Any:
        from sentry_sdk.integrations.asyncio import enable_asyncio_integration

        loop = asyncio.get_running_loop()
        # As when sentry_sdk.init runs inside the server's loop: its factory comes first.
        enable_asyncio_integration(task_spans=False)
        enable_task_capture()
        factory = loop.get_task_factory()
        enable_task_capture()  # idempotent: neither we nor sentry-sdk wrap a second time
        assert loop.get_task_factory() is factory
        await loop.create_task(RequestResponseCycle(names).run_asgi())
        failing = loop.create_task(fail())
        with pytest.raises(LookupError):
            await failing
        return failing.get_name()

    failing_name = asyncio.run(main())
    # The server's request task is a plain task (the request scope comes from the
    # bridge's middleware); every other task still goes through sentry-sdk's wrapper.
    assert "Sentry-wrapped" not in names[0]
    assert "Sentry-wrapped" in failing_name
    (event,) = captured.of("event")
    assert event["exception"]["values"][-1]["value"] == "background task failed"


def test_task_capture_keeps_a_loops_own_task_factory_in_charge(
    sentry: Callable[..., Any],
) -> None:
    from telemetry.sentry.asgi import enable_task_capture

    sentry()
    made: list[str] = []

    def own_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        made.append(coro.cr_code.co_qualname)
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main() -> None:
        asyncio.get_running_loop().set_task_factory(own_factory)
        enable_task_capture()
        await asyncio.get_running_loop().create_task(RequestResponseCycle([]).run_asgi())

    asyncio.run(main())
    # sentry-sdk's wrapper runs (it calls the loop's own factory with its wrapper coroutine).
    assert made and all("run_asgi" not in name for name in made)
