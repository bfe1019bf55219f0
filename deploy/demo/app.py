"""The demo "agentic platform" API: `uvicorn demo.app:app`.

Environment: DATABASE_URL (a SQLite file in the working directory when unset), REDIS_URL
(no cache when unset), MODEL_PROVIDER_URL, MODEL_PROVIDER_API_KEY, DEMO_API_KEYS, plus the
telemetry variables of the README's configuration table (ENVIRONMENT, SENTRY_DSN, OTEL_SERVICE_NAME,
OTEL_EXPORTER_OTLP_ENDPOINT, ...).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from openai import AsyncOpenAI, DefaultAsyncHttpxClient
from opentelemetry import propagate

from demo import agents, ops
from demo.auth import ApiKeyAuthMiddleware
from demo.cache import AgentCache
from demo.config import DemoConfig
from demo.db import AgentRepository, create_tables, make_engine, make_sessions
from demo.services import Services
from telemetry import TelemetrySettings, setup_telemetry

logger = logging.getLogger("demo.app")


def llm_client(config: DemoConfig, transport: Any = None) -> AsyncOpenAI:
    """The official OpenAI client for the model provider. Its HTTP stack (httpx2) is not the
    one OpenTelemetry's HTTPX instrumentation patches, so the trace context is injected by a
    request hook: the provider's server span then nests under the `chat` span that the OpenAI
    instrumentation has made current around the request."""

    async def inject_trace_context(request: Any) -> None:
        propagate.inject(request.headers)

    return AsyncOpenAI(
        base_url=f"{config.model_provider_url}/v1",
        api_key=config.model_provider_api_key,
        # The agent decides about retries (none in the demo): a retried call would be a
        # second `chat` span the reader of the demo report has to explain.
        max_retries=0,
        timeout=10.0,
        http_client=DefaultAsyncHttpxClient(
            event_hooks={"request": [inject_trace_context]},
            # A test serves the provider in-process (httpx2.ASGITransport).
            **({"transport": transport} if transport is not None else {}),
        ),
    )


def create_app(
    settings: TelemetrySettings | None = None, config: DemoConfig | None = None
) -> FastAPI:
    # settings=None: setup_telemetry reads them from the environment and names any invalid
    # variable in its error.
    config = config or DemoConfig.from_env()
    engine = make_engine(config.database_url)
    cache = AgentCache(config.redis_url, config.cache_ttl_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await create_tables(engine)
        # Created here, after setup_telemetry instrumented HTTPX, and closed on shutdown so
        # no connection outlives the event loop.
        provider = httpx.AsyncClient(base_url=config.model_provider_url, timeout=10.0)
        llm = llm_client(config)
        services = Services(
            config=config,
            engine=engine,
            repo=AgentRepository(make_sessions(engine)),
            cache=cache,
            provider=provider,
            llm=llm,
        )
        app.state.services = services
        logger.info(
            "demo api ready",
            extra={"database": engine.url.get_backend_name(), "cache": cache.enabled},
        )
        try:
            yield
        finally:
            # Background executions still running would lose their spans and their DB write.
            await services.drain()
            await provider.aclose()
            await llm.close()
            await cache.close()
            await engine.dispose()
            # Telemetry flushes after this: setup_telemetry wraps this lifespan and shuts the
            # pipeline down once the app's own resources are released.

    app = FastAPI(title="Agentic Platform (telemetry demo)", version="1.0.0", lifespan=lifespan)
    app.add_middleware(ApiKeyAuthMiddleware, keys=config.api_keys)
    app.include_router(agents.router)
    app.include_router(ops.debug_router)
    app.include_router(ops.health_router)
    # The engine was made before setup, so its queries are traced only because it is passed
    # in (the SQLAlchemy instrumentor patches create_engine, which has already run).
    app.state.telemetry = setup_telemetry(app, settings, engines=[engine])
    return app


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first access (uvicorn's and gunicorn's "module:app" lookup is a
    # getattr), not at import: importing this module for create_app() in a test or a tool
    # must not initialise the process-wide telemetry pipeline from whatever env is around.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
