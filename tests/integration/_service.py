"""A small instrumented FastAPI service served by a real uvicorn, for integration tests."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import redis
import sqlalchemy
import uvicorn
from fastapi import FastAPI, Request

from telemetry import (
    TelemetryHandle,
    TelemetrySettings,
    capture_exception,
    set_user_context,
    setup_telemetry,
    start_agent,
    start_llm_call,
    start_span,
    start_tool,
)
from tests.support.net import free_port

log = logging.getLogger("service")


class RecordingHandler(logging.Handler):
    """Keeps every record, with the trace fields the telemetry filter put on it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def for_trace(self, trace_id: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "trace_id", "") == trace_id]


def build_app(engine: sqlalchemy.Engine, redis_url: str, downstream_url: str | None) -> FastAPI:
    app = FastAPI()
    cache = redis.Redis.from_url(redis_url)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        user = request.headers.get("x-user")
        if user:
            set_user_context(user_id=user, tenant_id="acme")
        return await call_next(request)

    @app.get("/api/v1/items/{item_id}")
    def read_item(item_id: int) -> dict[str, Any]:
        log.info("reading item %s", item_id)
        with engine.connect() as connection:
            value = connection.execute(sqlalchemy.text("SELECT :v + 1"), {"v": item_id}).scalar()
        cache.set(f"item:{item_id}", str(value))
        return {"item_id": item_id, "value": value}

    @app.get("/api/v1/crash")
    def crash() -> None:
        log.info("about to fail")
        with start_span("db.query", "load context"):
            raise RuntimeError("unhandled failure in the route")

    @app.post("/api/v1/handled")
    def handled() -> dict[str, str]:
        try:
            raise ValueError("handled failure")
        except ValueError as exc:
            event_id = capture_exception(exc, order_id="o-42", action="checkout")
        return {"event_id": event_id or ""}

    @app.get("/api/v1/call")
    async def call_downstream(path: str = "echo-headers") -> Any:
        assert downstream_url is not None
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{downstream_url}/{path}")
        return response.json() if response.status_code == 200 else {"status": response.status_code}

    @app.post("/api/v1/login")
    async def login(request: Request) -> None:
        body = await request.json()
        credentials = {"user": body.get("user"), "nested": {"password": body.get("password")}}
        api_key = request.headers.get("x-api-key")
        log.error("login failed for password=%s", body.get("password"))
        # The secret rides along in the frame's locals (nested), a log argument and the
        # exception message.
        assert credentials["nested"]["password"]
        raise ConnectionError(f"upstream refused api_key={api_key}")

    @app.post("/api/v1/reset-password/{token}")
    async def reset_password(token: str, request: Request) -> None:
        """Secrets that no name gives away: a route parameter, SQL literals, a database
        error's detail, free text after a sensitive word, a bot token in a URL path."""
        body = await request.json()
        signing_key, otp = body.get("signing_key"), body.get("otp")
        log.warning("invalid token %s", body.get("session_token"))
        log.info("password reset asked for %s", token)  # a breadcrumb only the route names
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))  # the span the literal rides on
            connection.execute(sqlalchemy.text(f"SELECT '{body.get('new_password')}'::text"))
        async with httpx.AsyncClient() as client:
            await client.get(f"{downstream_url}/bot123456789:{body.get('bot_token')}/sendMessage")
        assert signing_key and otp and token
        with engine.begin() as connection:
            connection.execute(
                sqlalchemy.text(
                    "CREATE TABLE IF NOT EXISTS scrub_reset (reset_token text PRIMARY KEY)"
                )
            )
            connection.execute(sqlalchemy.text("DELETE FROM scrub_reset"))
            for _ in range(2):  # the second insert fails: DETAIL: Key (reset_token)=(...)
                connection.execute(
                    sqlalchemy.text("INSERT INTO scrub_reset (reset_token) VALUES (:t)"),
                    {"t": body.get("reset_token")},
                )

    @app.get("/api/v1/hostile/{kind}")
    def hostile(kind: str) -> None:
        """Exceptions that break whoever describes them."""
        raise hostile_exception(kind)

    @app.post("/api/v1/agents/execute")
    def execute() -> dict[str, str]:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        return {"status": "done"}

    @app.post("/api/v1/agents/plan")
    def plan(step: int = 0) -> dict[str, str]:
        # An agent step through the GenAI facade (no network): one LLM call and one tool;
        # some steps fail, so the error series of the Agents dashboard have data too.
        with start_agent("planner", model="gpt-4o-mini", provider="openai"):
            with start_llm_call("gpt-4o-mini", provider="openai") as call:
                if step % 7 == 6:
                    raise TimeoutError("model timed out")
                call.set_usage(input_tokens=120 + step % 5, output_tokens=30)
            with start_tool("search_docs"):
                if step % 4 == 3:
                    raise LookupError("index unavailable")
        return {"status": "planned"}

    @app.get("/health/live")
    def live() -> dict[str, str]:
        return {"status": "ok"}

    return app


class UnprintableError(RuntimeError):
    def __str__(self) -> str:
        raise KeyError("__str__ is hostile")

    def __repr__(self) -> str:
        raise KeyError("__repr__ is hostile")


HUGE_MESSAGE_BYTES = 10 * 1024 * 1024


def hostile_exception(kind: str) -> Exception:
    if kind == "unprintable":
        return UnprintableError("x")
    if kind == "cycle":
        first, second = ValueError("first of a cycle"), ValueError("second of a cycle")
        first.__cause__, second.__cause__ = second, first
        first.__context__, second.__context__ = second, first
        return first
    if kind == "huge":
        return ValueError("x" * HUGE_MESSAGE_BYTES)
    return ValueError(f"plain {kind}")


def build_downstream() -> FastAPI:
    app = FastAPI()

    @app.get("/echo-headers")
    def echo(request: Request) -> dict[str, str]:
        return {
            k: v
            for k, v in request.headers.items()
            if k in ("traceparent", "sentry-trace", "baggage")
        }

    @app.get("/unavailable")
    def unavailable() -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({"error": "overloaded"}, status_code=503)

    return app


class Server:
    """uvicorn on a free 127.0.0.1 port, in a thread (one asyncio task per request, as in
    production)."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            # uvicorn's own logging set-up would change its loggers for the whole test
            # process (levels, handlers); the telemetry under test owns logging here.
            log_config=None,
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            threading.Event().wait(0.05)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@contextmanager
def running_service(
    settings: TelemetrySettings, postgres_url: str, redis_url: str
) -> Iterator[tuple[str, TelemetryHandle, RecordingHandler]]:
    """The service and its downstream, instrumented, served; yields (url, handle, logs)."""
    engine = sqlalchemy.create_engine(postgres_url)
    records = RecordingHandler()
    root = logging.getLogger()
    root.addHandler(records)
    root.setLevel(logging.INFO)
    downstream = build_downstream()
    handle = setup_telemetry(None, settings, engines=[engine])
    try:
        handle.instrument_app(downstream)
        with Server(downstream) as downstream_server:
            app = build_app(engine, redis_url, downstream_server.url)
            handle.instrument_app(app)
            with Server(app) as server:
                yield server.url, handle, records
    finally:
        handle.shutdown()
        root.removeHandler(records)
        engine.dispose()


def call(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request from a client that telemetry does not instrument (httpx is, process
    wide, and would replace the trace headers a test sends with its own)."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode("utf-8", "replace")
