"""The fidelity app, and the four ways of instrumenting it.

One FastAPI app, the same for every configuration: PostgreSQL through SQLAlchemy, Redis
GET (hit and miss) and SET, an outgoing HTTPX call, a custom span with an op, a standalone
transaction outside any request, a handled error with keyword context, an unhandled error
(500), a user with id, email and tenant, a JSON body with a password field, a form body and
an asyncio task that fails. What differs is the ``Facade``: how the app sets the user,
reports a handled error and makes its own spans, in each tool's own idiom.

Each configuration runs in its own process (the SDKs keep global state)::

    python -m tests.integration.fidelity.app CONFIG --port PORT --downstream URL

with the sinks given in the environment (see ``run.py``). The process serves until SIGTERM,
then flushes and exits: once it has exited, everything it sends has been received.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import redis
import sqlalchemy
import uvicorn
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

log = logging.getLogger("fidelity.app")

OTEL = "otel"
SENTRY = "sentry"
BRIDGE_OTLP = "bridge-otlp"
BRIDGE_ENVELOPE = "bridge-envelope"
CONFIGS = (OTEL, SENTRY, BRIDGE_OTLP, BRIDGE_ENVELOPE)

SERVICE = "fidelity"
VERSION = "1.0.0"
RELEASE = f"{SERVICE}@{VERSION}"
ENVIRONMENT = "staging"

# What the scenario sends and the app sets; the comparison looks for these values.
USER_ID = "u-1001"
USER_EMAIL = "ada@example.org"
TENANT = "acme"
CACHE_PREFIX = "cache:"
CUSTOM_OP = "pricing.compute"
CUSTOM_DESCRIPTION = "compute price"
TRANSACTION_NAME = "nightly-report"
TRANSACTION_OP = "job.report"
TRANSACTION_CHILD_OP = "report.render"
TRANSACTION_CHILD_DESCRIPTION = "render report"
HANDLED_CONTEXT = {"order_id": "o-1001", "step": "payment"}


@dataclass
class Facade:
    """How the app talks to its telemetry, in one tool's idiom."""

    set_user: Callable[[str, str, str], None]
    capture_handled: Callable[..., Any]
    span: Callable[[str, str], AbstractContextManager[Any]]
    transaction: Callable[[str, str], AbstractContextManager[Any]]
    on_loop_start: Callable[[], None] = lambda: None
    shutdown: Callable[[], None] = lambda: None
    instrument_app: Callable[[FastAPI], None] = lambda app: None
    extra: dict[str, Any] = field(default_factory=dict)


# -- (a) OpenTelemetry's instrumentations alone -----------------------------------------------


def otel_facade() -> Facade:
    """TracerProvider + batch OTLP/HTTP export; the contrib FastAPI, SQLAlchemy, Redis and
    HTTPX instrumentors with their defaults. Service name and resource from the standard
    ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``."""
    from opentelemetry import context, trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    SQLAlchemyInstrumentor().instrument()
    RedisInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()
    tracer = trace.get_tracer("fidelity")

    def set_user(user_id: str, email: str, tenant: str) -> None:
        trace.get_current_span().set_attribute("enduser.id", user_id)

    def capture_handled(exc: BaseException, **context: Any) -> None:
        trace.get_current_span().record_exception(exc)

    def span(op: str, description: str) -> AbstractContextManager[Any]:
        return tracer.start_as_current_span(description)

    @contextmanager
    def transaction(name: str, op: str) -> Iterator[Any]:
        with tracer.start_as_current_span(name, context=context.Context()) as root:
            yield root

    return Facade(
        set_user=set_user,
        capture_handled=capture_handled,
        span=span,
        transaction=transaction,
        shutdown=provider.shutdown,
        instrument_app=FastAPIInstrumentor.instrument_app,
    )


# -- (b) sentry-sdk alone ------------------------------------------------------------------


def sentry_facade() -> Facade:
    """sentry-sdk with its FastAPI/Starlette, SQLAlchemy, Redis and HTTPX integrations,
    ``traces_sample_rate=1.0`` and default options otherwise (``send_default_pii`` False).

    Two integration options a user of those views sets: Redis ``cache_prefixes`` (without
    them sentry-sdk makes no cache spans and Sentry's Caches view stays empty) and the
    asyncio integration (task errors), enabled once the loop runs, as its docs say."""
    import sentry_sdk
    from sentry_sdk.integrations.fastapi import FastApiIntegration
    from sentry_sdk.integrations.httpx import HttpxIntegration
    from sentry_sdk.integrations.redis import RedisIntegration
    from sentry_sdk.integrations.sqlalchemy import SqlalchemyIntegration
    from sentry_sdk.integrations.starlette import StarletteIntegration

    sentry_sdk.init(  # the DSN from SENTRY_DSN, as sentry-sdk reads it
        release=RELEASE,
        environment=ENVIRONMENT,
        traces_sample_rate=1.0,
        integrations=[
            StarletteIntegration(),
            FastApiIntegration(),
            SqlalchemyIntegration(),
            RedisIntegration(cache_prefixes=[CACHE_PREFIX]),
            HttpxIntegration(),
        ],
    )

    def set_user(user_id: str, email: str, tenant: str) -> None:
        sentry_sdk.set_user({"id": user_id, "email": email})
        sentry_sdk.set_tag("tenant_id", tenant)

    def capture_handled(exc: BaseException, **context: Any) -> str | None:
        return sentry_sdk.capture_exception(exc, contexts={"context": context})

    def span(op: str, description: str) -> AbstractContextManager[Any]:
        return sentry_sdk.start_span(op=op, name=description)

    def transaction(name: str, op: str) -> AbstractContextManager[Any]:
        return sentry_sdk.start_transaction(name=name, op=op)

    def on_loop_start() -> None:
        from sentry_sdk.integrations.asyncio import enable_asyncio_integration

        enable_asyncio_integration()

    return Facade(
        set_user=set_user,
        capture_handled=capture_handled,
        span=span,
        transaction=transaction,
        on_loop_start=on_loop_start,
        shutdown=lambda: sentry_sdk.get_client().close(timeout=10),
    )


# -- (c), (d) the bridge ----------------------------------------------------------------------


def bridge_facade() -> Facade:
    """``setup_telemetry(app)`` from the environment (staging profile; the mode from
    ``TELEMETRY_SENTRY_TRACES``), through the public API only."""
    import telemetry

    handle = telemetry.setup_telemetry()

    def set_user(user_id: str, email: str, tenant: str) -> None:
        telemetry.set_user_context(user_id, email=email, tenant_id=tenant)

    def span(op: str, description: str) -> AbstractContextManager[Any]:
        return telemetry.start_span(op=op, description=description)

    def transaction(name: str, op: str) -> AbstractContextManager[Any]:
        return telemetry.start_transaction(name=name, op=op)

    def instrument_app(app: FastAPI) -> None:
        # The same handle: engines made after the first call are traced (create_engine is
        # patched), and this call instruments the app with the pipeline already built.
        telemetry.setup_telemetry(app)

    return Facade(
        set_user=set_user,
        capture_handled=telemetry.capture_exception,
        span=span,
        transaction=transaction,
        shutdown=handle.shutdown,
        instrument_app=instrument_app,
    )


FACADES: dict[str, Callable[[], Facade]] = {
    OTEL: otel_facade,
    SENTRY: sentry_facade,
    BRIDGE_OTLP: bridge_facade,
    BRIDGE_ENVELOPE: bridge_facade,
}


# -- the app ----------------------------------------------------------------------------------


class Checkout(BaseModel):
    item_id: int
    card_holder: str
    password: str


def build_app(facade: Facade, postgres_url: str, redis_url: str, downstream_url: str) -> FastAPI:
    # Made after the instrumentation is set up: SQLAlchemy's instrumentor patches
    # create_engine (DESIGN trap 9).
    engine = sqlalchemy.create_engine(postgres_url)
    cache = redis.Redis.from_url(redis_url)
    background: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        facade.on_loop_start()
        yield

    app = FastAPI(lifespan=lifespan)

    async def current_user(request: Request) -> str | None:
        user_id = request.headers.get("x-user-id")
        if user_id:
            facade.set_user(user_id, USER_EMAIL, TENANT)
        return user_id

    def query(statement: str, **params: Any) -> Any:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text(statement), params).first()

    async def fetch_price(item_id: int) -> float:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{downstream_url}/prices/{item_id}")
        return float(response.json()["price"])

    @app.get("/items/{item_id}")
    async def read_item(
        item_id: int, q: str | None = None, user: str | None = Depends(current_user)
    ) -> dict[str, Any]:
        log.info("fidelity: reading item %s", item_id)
        row = query("SELECT :item_id AS id, 'book' AS name", item_id=item_id)
        cache.set(f"{CACHE_PREFIX}item:{item_id}", row.name)
        hit = cache.get(f"{CACHE_PREFIX}item:{item_id}")
        miss = cache.get(f"{CACHE_PREFIX}missing:{item_id}")
        price = await fetch_price(item_id)
        with facade.span(CUSTOM_OP, CUSTOM_DESCRIPTION):
            total = price * 2
        return {"id": row.id, "hit": hit is not None, "miss": miss is None, "total": total}

    @app.post("/checkout")
    async def checkout(
        order: Checkout, coupon: str | None = None, user: str | None = Depends(current_user)
    ) -> dict[str, Any]:
        log.info("fidelity: checkout of item %s", order.item_id)
        query("SELECT :item_id AS id", item_id=order.item_id)
        cache.get(f"{CACHE_PREFIX}item:{order.item_id}")
        await fetch_price(order.item_id)
        try:
            raise ValueError("card declined")
        except ValueError as exc:
            event_id = facade.capture_handled(exc, **HANDLED_CONTEXT)
        return {"event_id": event_id}

    @app.post("/profile")
    async def update_profile(request: Request, user: str | None = Depends(current_user)) -> None:
        # Parsed by hand: Starlette's request.form() needs python-multipart, which this
        # environment does not have (sentry-sdk then sends the body as raw data).
        form = parse_qs((await request.body()).decode())
        log.warning("fidelity: profile update for %s", form.get("display_name"))
        query("SELECT 1 AS ok")
        raise RuntimeError("profile store unavailable")

    async def failing_report() -> None:
        raise LookupError("report source vanished")

    @app.post("/tasks", status_code=202)
    async def start_task(user: str | None = Depends(current_user)) -> dict[str, str]:
        log.info("fidelity: starting a background task")
        task = asyncio.create_task(failing_report(), name="fidelity-report")
        # The fire-and-forget idiom of asyncio's documentation: keep a reference until done.
        background.add(task)
        task.add_done_callback(background.discard)
        await asyncio.sleep(0)  # the task runs (and fails) while the request is in progress
        return {"task": task.get_name()}

    app.state.nightly_job = lambda: nightly_job(facade, query)
    facade.instrument_app(app)
    return app


def nightly_job(facade: Facade, query: Callable[..., Any]) -> None:
    """A standalone transaction outside any request (a cron job or a worker)."""
    with facade.transaction(TRANSACTION_NAME, TRANSACTION_OP):
        query("SELECT count(*) AS tables FROM pg_catalog.pg_tables")
        with facade.span(TRANSACTION_CHILD_OP, TRANSACTION_CHILD_DESCRIPTION):
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", choices=CONFIGS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--downstream", required=True)
    parser.add_argument("--postgres", required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    facade = FACADES[args.config]()
    app = build_app(facade, args.postgres, args.redis, args.downstream)
    app.state.nightly_job()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=args.port,
            lifespan="on",
            log_config=None,
            access_log=False,
        )
    )
    # uvicorn re-raises the SIGTERM it handled once it has shut down; with this handler
    # in place that re-raise returns here, and the SDKs flush like an app's exit would.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()  # until SIGTERM; the lifespan shutdown runs then
    facade.shutdown()
    print("fidelity: flushed and stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
