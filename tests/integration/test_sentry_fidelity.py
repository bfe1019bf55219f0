"""What Sentry receives from the bridge, field by field, as sentry-sdk's own integrations
would send it: ops and names, user with an explicit email, request bodies, release-health
sessions, breadcrumbs of dependency calls, cache spans, isolation between requests, one event
per task failure. Real uvicorn, PostgreSQL, Redis, an OTLP receiver and a Sentry-protocol
receiver; both Sentry trace modes."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy
from fastapi import FastAPI, Request

from telemetry import (
    TelemetrySettings,
    capture_exception,
    set_tag,
    set_user_context,
    setup_telemetry,
    start_span,
    start_transaction,
)
from tests.integration._service import Server, build_downstream
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.sentry_receiver import SentryReceiver

PASSWORD = "hunter2-fidelity-secret"


def build_app(engine: sqlalchemy.Engine, redis_url: str, downstream: str) -> FastAPI:
    app = FastAPI()
    cache = redis.Redis.from_url(redis_url)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        # Runs before routing, as an API-key middleware does.
        user = request.headers.get("x-user")
        if user:
            set_user_context(user_id=user, email=f"{user}@example.com", tenant_id="acme")
        if request.headers.get("x-tag"):
            set_tag("leaky", request.headers["x-tag"])
        return await call_next(request)

    @app.post("/api/orders")
    async def order(request: Request) -> None:
        await request.body()
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        cache.set("cache:order", "1")
        cache.get("cache:order")
        cache.get("cache:missing")
        async with httpx.AsyncClient() as client:
            await client.get(f"{downstream}/echo-headers?page=2")
        with start_span("order.validate", "validate order"):
            raise RuntimeError("order rejected")

    @app.get("/api/handled")
    def handled() -> dict[str, str]:
        try:
            raise ValueError("handled failure")
        except ValueError as exc:
            return {"event_id": capture_exception(exc, order_id="o-1") or ""}

    @app.get("/api/ok")
    def ok() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/task")
    async def task() -> dict[str, str]:
        async def fail() -> None:
            raise LookupError("background task failed")

        asyncio.get_running_loop().create_task(fail())
        await asyncio.sleep(0.05)
        return {"status": "scheduled"}

    @app.get("/health/live")
    def live() -> None:
        raise RuntimeError("health check failure")

    return app


def post(url: str, body: bytes, content_type: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"content-type": content_type, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def get(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(params=["otlp", "envelope"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def service(
    mode: str,
    otlp_receiver: OTLPReceiver,
    sentry_receiver: SentryReceiver,
    postgres_url: str,
    redis_url: str,
) -> Iterator[tuple[str, Any]]:
    settings = TelemetrySettings(
        environment="staging",
        service_name="fidelity",
        service_version="2.0.0",
        sentry_dsn=sentry_receiver.dsn,
        sentry_traces=mode,
        otlp_endpoint=otlp_receiver.url,
        profiles_sample_rate=0.0,
        cache_prefixes=["cache:"],
    )
    engine = sqlalchemy.create_engine(postgres_url)
    handle = setup_telemetry(None, settings, engines=[engine])
    try:
        downstream = build_downstream()
        handle.instrument_app(downstream)
        with Server(downstream) as downstream_server:
            app = build_app(engine, redis_url, downstream_server.url)
            handle.instrument_app(app)
            with Server(app) as server:
                yield server.url, handle
    finally:
        handle.shutdown()
        engine.dispose()


def event_with(receiver: SentryReceiver, value: str) -> dict[str, Any]:
    (event,) = receiver.wait_for(
        "event",
        lambda e: any(v.get("value") == value for v in e.get("exception", {}).get("values", [])),
    )
    return dict(event)


def test_error_event_carries_user_request_body_breadcrumbs_and_route(
    service: tuple[str, Any], sentry_receiver: SentryReceiver, otlp_receiver: OTLPReceiver
) -> None:
    url, _ = service
    body = json.dumps({"item": "book", "password": PASSWORD}).encode()
    status = post(f"{url}/api/orders", body, "application/json", {"x-user": "u-7"})
    assert status == 500

    event = event_with(sentry_receiver, "order rejected")
    assert event["user"] == {"id": "u-7", "email": "u-7@example.com", "tenant_id": "acme"}
    request = event["request"]
    assert request["method"] == "POST"
    assert request["url"].endswith("/api/orders")
    assert request["data"] == {"item": "book", "password": "[Filtered]"}
    assert event["transaction"] == "/api/orders"
    assert event["transaction_info"] == {"source": "route"}
    assert event["release"] == "fidelity@2.0.0"
    assert event["environment"] == "staging"
    assert event["tags"]["tenant_id"] == "acme"
    trace = event["contexts"]["trace"]
    assert trace["op"] == "http.server" and trace["status"] == "internal_error"
    assert trace["data"]["http.response.status_code"] == 500
    assert event["contexts"]["runtime"]["name"] == "CPython"

    crumbs = event["breadcrumbs"]["values"]
    by_category = {c.get("category") for c in crumbs}
    assert {"query", "redis", "httplib"} <= by_category, crumbs
    sql = next(c for c in crumbs if c.get("category") == "query")
    assert sql["message"] == "SELECT 1" and sql["data"]["db.system"] == "postgresql"
    http = next(c for c in crumbs if c.get("category") == "httplib")
    assert http["type"] == "http"
    assert http["data"]["http.method"] == "GET"
    assert http["data"]["url"].endswith("/echo-headers")
    assert http["data"]["http.query"] == "page=2"
    assert http["data"]["status_code"] == 200
    redis_spans = otlp_receiver.wait_for_spans(lambda s: s.attributes.get("db.system") == "redis")
    assert {s.attributes["sentry.op"] for s in redis_spans} >= {"cache.get", "cache.put"}
    redis_messages = [c["message"] for c in crumbs if c.get("category") == "redis"]
    assert "SET 'cache:order' [Filtered]" in redis_messages
    assert "GET 'cache:missing'" in redis_messages
    assert PASSWORD.encode() not in sentry_receiver.raw_bytes()


def test_form_body_is_attached_and_scrubbed(
    service: tuple[str, Any], sentry_receiver: SentryReceiver
) -> None:
    url, _ = service
    body = f"item=pen&password={PASSWORD}".encode()
    assert post(f"{url}/api/orders", body, "application/x-www-form-urlencoded", {}) == 500
    event = event_with(sentry_receiver, "order rejected")
    assert event["request"]["data"] == {"item": "pen", "password": "[Filtered]"}


def test_body_over_the_bound_is_not_attached(
    service: tuple[str, Any], sentry_receiver: SentryReceiver
) -> None:
    url, _ = service
    body = json.dumps({"blob": "x" * 20_000}).encode()
    assert post(f"{url}/api/orders", body, "application/json", {}) == 500
    event = event_with(sentry_receiver, "order rejected")
    assert "data" not in event["request"] or event["request"]["data"] in ("", None)
    assert b"x" * 20_000 not in sentry_receiver.raw_bytes()


def test_nothing_set_in_one_request_reaches_another(
    service: tuple[str, Any], sentry_receiver: SentryReceiver
) -> None:
    url, _ = service
    body = json.dumps({"item": "book"}).encode()
    assert post(f"{url}/api/orders", body, "application/json", {"x-user": "first"}) == 500
    get(f"{url}/health/live", {"x-user": "health", "x-tag": "from-health"})
    assert get(f"{url}/api/handled") == 200
    handled = event_with(sentry_receiver, "handled failure")
    assert "user" not in handled or handled["user"] in ({}, None)
    assert "leaky" not in handled.get("tags", {})
    assert handled["contexts"]["context"] == {"order_id": "o-1"}
    crumbs = handled.get("breadcrumbs", {}).get("values", [])
    assert not [c for c in crumbs if c.get("category") in ("query", "redis", "httplib")], crumbs


def test_error_in_an_excluded_route_sends_nothing(
    service: tuple[str, Any], sentry_receiver: SentryReceiver
) -> None:
    url, handle = service
    assert get(f"{url}/health/live") == 500
    assert get(f"{url}/api/handled") == 200
    event_with(sentry_receiver, "handled failure")
    handle.force_flush()
    values = [
        v.get("value") for e in sentry_receiver.events() for v in e["exception"]["values"]
    ]
    assert "health check failure" not in values


def test_a_failed_task_is_one_event_with_the_request_context(
    service: tuple[str, Any], sentry_receiver: SentryReceiver
) -> None:
    url, handle = service
    assert get(f"{url}/api/task", {"x-user": "tasker"}) == 200
    event = event_with(sentry_receiver, "background task failed")
    assert event["user"]["id"] == "tasker"
    handle.force_flush()
    failures = [
        e
        for e in sentry_receiver.events()
        if "background task failed" in json.dumps(e.get("exception", {}))
        or "background task failed" in json.dumps(e.get("logentry", {}))
    ]
    assert len(failures) == 1, failures


def test_release_health_sessions_in_request_mode(
    service: tuple[str, Any], sentry_receiver: SentryReceiver
) -> None:
    url, handle = service
    for _ in range(3):
        assert get(f"{url}/api/ok") == 200
    assert get(f"{url}/api/handled") == 200
    assert post(f"{url}/api/orders", b"{}", "application/json", {}) == 500
    assert get(f"{url}/health/live") == 500  # excluded: not a session
    handle.shutdown()  # flushes the session aggregates

    (sessions,) = sentry_receiver.wait_for("sessions")
    assert sessions["attrs"] == {"release": "fidelity@2.0.0", "environment": "staging"}
    totals: dict[str, int] = {}
    for bucket in sessions["aggregates"]:
        assert "started" in bucket
        for key in ("exited", "errored", "crashed"):
            totals[key] = totals.get(key, 0) + int(bucket.get(key, 0))
    # /api/orders calls the downstream service, itself instrumented: one more session.
    assert totals == {"exited": 3 + 1, "errored": 1, "crashed": 1}


def test_ops_names_and_cache_spans(
    mode: str,
    service: tuple[str, Any],
    sentry_receiver: SentryReceiver,
    otlp_receiver: OTLPReceiver,
) -> None:
    url, handle = service
    assert post(f"{url}/api/orders", b"{}", "application/json", {}) == 500
    with (
        start_transaction(name="nightly-rollup", op="task.rollup"),
        start_span("rollup.step", "sum totals"),
    ):
        pass
    handle.force_flush()

    jaeger = otlp_receiver.wait_for_spans(lambda s: s.name == "nightly-rollup")
    assert jaeger[0].attributes["sentry.op"] == "task.rollup"
    custom = otlp_receiver.wait_for_spans(lambda s: s.name == "validate order")[0]
    assert custom.attributes["sentry.op"] == "order.validate"
    reads = otlp_receiver.wait_for_spans(
        lambda s: s.attributes.get("sentry.op") == "cache.get", count=2
    )
    hits = {tuple(s.attributes["cache.key"]): s.attributes["cache.hit"] for s in reads}
    assert hits == {("cache:order",): True, ("cache:missing",): False}
    (client, *_) = otlp_receiver.wait_for_spans(
        lambda s: s.kind == "CLIENT" and "echo-headers" in str(s.attributes.get("http.url", ""))
    )
    # Start attributes of the HTTPX instrumentation survive the sampler (the method is what
    # Sentry derives the http.client op from).
    assert client.attributes["http.method"] == "GET"
    assert client.attributes["http.status_code"] == 200

    if mode == "otlp":
        sentry_spans = sentry_receiver.wait_for_spans(lambda s: s.name == "nightly-rollup")
        assert sentry_spans[0].attributes["sentry.op"] == "task.rollup"
        return
    (rollup,) = sentry_receiver.wait_for(
        "transaction", lambda t: t.get("transaction") == "nightly-rollup"
    )
    assert rollup["contexts"]["trace"]["op"] == "task.rollup"
    assert [s["op"] for s in rollup["spans"]] == ["rollup.step"]
    assert rollup["spans"][0]["description"] == "sum totals"
    (order,) = sentry_receiver.wait_for(
        "transaction", lambda t: str(t.get("transaction", "")).endswith("/api/orders")
    )
    ops = {s["op"] for s in order["spans"]}
    assert {"order.validate", "cache.get", "cache.put", "db", "http.client"} <= ops, ops


def test_redis_commands_outside_the_cache_prefixes_are_db_redis_spans(
    service: tuple[str, Any], otlp_receiver: OTLPReceiver, redis_url: str
) -> None:
    _, handle = service
    client = redis.Redis.from_url(redis_url)
    with start_transaction(name="redis-check", op="task"):
        client.set("profile:42", "secret-value")
    handle.force_flush()
    (span,) = otlp_receiver.wait_for_spans(lambda s: s.attributes.get("redis.key") == "profile:42")
    assert span.attributes["sentry.op"] == "db.redis"
    assert span.attributes["sentry.description"] == "SET 'profile:42' [Filtered]"
    assert span.attributes["redis.command"] == "SET"
    assert b"secret-value" not in otlp_receiver.raw_bytes()
