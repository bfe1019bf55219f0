"""The benchmark app: the same FastAPI service in every configuration.

``/items`` runs one SQLAlchemy query (SQLite file, or PostgreSQL) and returns ~200 bytes of
JSON; ``/json`` returns the same JSON without touching the database. What changes between
configurations is only the telemetry wired around it (:data:`CONFIGS`).

uvicorn starts it with ``--factory benchmarks.app:create_app_from_env``; the harness passes
the configuration, the sink URLs and the database URL in ``BENCH_*`` variables. ``SIGUSR1``
flushes whatever telemetry the configuration has (off the request path, on a thread) and
then writes ``BENCH_FLUSH_MARKER``, so the harness can read the sinks' counts once every
span of a phase has been sent, without a request that would itself be traced.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from fastapi import FastAPI
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.engine import Engine

__all__ = [
    "CONFIGS",
    "DEFAULT_CONFIGS",
    "BenchApp",
    "ConfigSpec",
    "build_app",
    "create_app_from_env",
    "prepare_database",
]

AppKind = Literal["bare", "sentry", "otel", "both", "native", "bridge"]
SinkState = Literal["up", "down", "blackhole"]


@dataclass(frozen=True)
class ConfigSpec:
    name: str
    kind: AppKind
    description: str
    environment: str = "staging"
    sentry_traces: str = "otlp"
    sinks: SinkState = "up"
    #: Extra ``TelemetrySettings`` fields (diagnostic variants of the bridge).
    overrides: tuple[tuple[str, Any], ...] = ()
    #: Part of the default run (diagnostic variants are only run when named).
    default: bool = True
    #: Head sampling rate of the ``otel``/``native`` anchors (``ParentBased(TraceIdRatio)``).
    rate: float = 1.0


CONFIGS: dict[str, ConfigSpec] = {
    spec.name: spec
    for spec in (
        ConfigSpec("bare", "bare", "no telemetry"),
        ConfigSpec(
            "sentry", "sentry", "sentry-sdk alone: its own FastAPI/SQLAlchemy tracing at 100%"
        ),
        ConfigSpec(
            "otel",
            "otel",
            "OpenTelemetry alone: FastAPI+SQLAlchemy instrumentation, BatchSpanProcessor "
            "+ OTLPSpanExporter",
        ),
        ConfigSpec("both", "both", "sentry-sdk and OpenTelemetry side by side, independently"),
        ConfigSpec(
            "otel-10",
            "otel",
            "OpenTelemetry alone at 10%: as otel, ParentBased(TraceIdRatioBased(0.1))",
            rate=0.1,
        ),
        ConfigSpec(
            "fastapi-native",
            "native",
            "FastAPI's native telemetry (FastAPI(telemetry=...), tracing only) + SQLAlchemy "
            "instrumentation, 100%, BatchSpanProcessor + OTLPSpanExporter",
        ),
        ConfigSpec(
            "fastapi-native-10",
            "native",
            "as fastapi-native at 10%: ParentBased(TraceIdRatioBased(0.1))",
            rate=0.1,
        ),
        ConfigSpec("bridge-otlp", "bridge", "setup_telemetry, staging (100%), sentry_traces=otlp"),
        ConfigSpec(
            "bridge-envelope",
            "bridge",
            "setup_telemetry, staging (100%), sentry_traces=envelope",
            sentry_traces="envelope",
        ),
        ConfigSpec(
            "bridge-prod",
            "bridge",
            "setup_telemetry, production (10%), sentry_traces=otlp",
            environment="production",
        ),
        ConfigSpec(
            "bridge-down",
            "bridge",
            "as bridge-otlp, both sinks refuse connections",
            sinks="down",
        ),
        ConfigSpec(
            "bridge-blackhole",
            "bridge",
            "as bridge-otlp, both sinks accept and never answer",
            sinks="blackhole",
        ),
        ConfigSpec(
            "bridge-otlp-noprof",
            "bridge",
            "diagnostic: as bridge-otlp without Sentry's continuous profiler",
            overrides=(("profiles_sample_rate", 0.0),),
            default=False,
        ),
        ConfigSpec(
            "bridge-unsampled",
            "bridge",
            "diagnostic: as bridge-prod with no request traced (traces 0%, no profiler): "
            "what the unsampled 90% cost",
            environment="production",
            overrides=(("traces_sample_rate", 0.0), ("profiles_sample_rate", 0.0)),
            default=False,
        ),
        ConfigSpec(
            "bridge-otlp-lean",
            "bridge",
            "diagnostic: as bridge-otlp without the profiler and without /metrics",
            overrides=(("profiles_sample_rate", 0.0), ("metrics_enabled", False)),
            default=False,
        ),
    )
}
DEFAULT_CONFIGS = [name for name, spec in CONFIGS.items() if spec.default]

ITEM_COUNT = 100
_metadata = MetaData()
ITEMS = Table(
    "bench_items",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("description", String(256), nullable=False),
    Column("price", Float, nullable=False),
)
_DESCRIPTION = "A benchmark item with a description long enough to make the body ~200 bytes."


def _item(item_id: int) -> dict[str, Any]:
    return {
        "id": item_id,
        "name": f"item-{item_id:04d}",
        "description": _DESCRIPTION,
        "price": round(1.5 * item_id, 2),
    }


#: What ``/json`` returns (and what a row of ``/items`` looks like): ~200 bytes of JSON.
STATIC_PAYLOAD: dict[str, Any] = {**_item(42), "tags": ["bench", "static"], "in_stock": True}


def prepare_database(url: str) -> None:
    """Create and fill the items table (idempotent); run before any server starts so the
    seeding is never traced."""
    engine = create_engine(url)
    try:
        _metadata.create_all(engine)
        with engine.begin() as conn:
            present = conn.execute(select(ITEMS.c.id)).scalars().all()
            missing = [_item(i) for i in range(1, ITEM_COUNT + 1) if i not in set(present)]
            if missing:
                conn.execute(ITEMS.insert(), missing)
    finally:
        engine.dispose()


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'bench.sqlite3'}"


@dataclass
class BenchApp:
    """The app of one configuration, and how to flush (and stop) its telemetry."""

    app: FastAPI
    config: ConfigSpec
    engine: Engine
    flush: Callable[[float], None]
    shutdown: Callable[[], None] = field(default=lambda: None)


def make_fastapi(engine: Engine, telemetry: dict[str, Any] | None = None) -> FastAPI:
    extra: dict[str, Any] = {} if telemetry is None else {"telemetry": telemetry}
    app = FastAPI(title="telemetry benchmark", **extra)

    @app.get("/items")
    def get_item() -> dict[str, Any]:
        item_id = random.randint(1, ITEM_COUNT)
        with engine.connect() as conn:
            row = conn.execute(select(ITEMS).where(ITEMS.c.id == item_id)).one()
        return {**row._asdict(), "tags": ["bench", "db"], "in_stock": True}

    @app.get("/json")
    async def get_json() -> dict[str, Any]:
        return STATIC_PAYLOAD

    return app


def _init_sentry_alone(dsn: str) -> None:
    import sentry_sdk

    # sentry-sdk's own FastAPI/Starlette/SQLAlchemy integrations (auto-enabled) at 100%.
    sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0, environment="staging", release="bench@0")


def _otel_provider(jaeger_url: str, rate: float) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    sampler = ALWAYS_ON if rate >= 1.0 else ParentBased(TraceIdRatioBased(rate))
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}), sampler=sampler)
    exporter = OTLPSpanExporter(endpoint=jaeger_url.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _otel_alone(app: FastAPI, engine: Engine, jaeger_url: str, rate: float = 1.0) -> Any:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    provider = _otel_provider(jaeger_url, rate)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=provider)
    return provider


def build_app(
    config: str,
    *,
    jaeger_url: str,
    sentry_dsn: str,
    database_url: str,
) -> BenchApp:
    """Build the app of ``config`` (a key of :data:`CONFIGS`). ``jaeger_url`` is an OTLP/HTTP
    base URL (``/v1/traces`` is appended); ``sentry_dsn`` a DSN whose host is the sink."""
    spec = CONFIGS[config]
    engine = create_engine(database_url)
    provider: Any = None
    if spec.kind == "native":
        # FastAPI's own telemetry (fastapi.telemetry, 0.165+): tracing through the given
        # provider; its metrics and logs stay off (no meter/logger provider), as otel's do.
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        provider = _otel_provider(jaeger_url, spec.rate)
        app = make_fastapi(engine, {"tracer_provider": provider, "metrics": False, "logs": False})
        SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=provider)
    else:
        app = make_fastapi(engine)

    if spec.kind == "bare":
        return BenchApp(app, spec, engine, flush=lambda timeout: None)

    if spec.kind in ("sentry", "otel", "both", "native"):
        if spec.kind in ("sentry", "both"):
            _init_sentry_alone(sentry_dsn)
        if spec.kind in ("otel", "both"):
            provider = _otel_alone(app, engine, jaeger_url, spec.rate)

        def flush(timeout: float) -> None:
            if provider is not None:
                provider.force_flush(int(timeout * 1000))
            if spec.kind in ("sentry", "both"):
                import sentry_sdk

                sentry_sdk.flush(timeout=timeout)

        def shutdown() -> None:
            if provider is not None:
                provider.shutdown()
            if spec.kind in ("sentry", "both"):
                import sentry_sdk

                sentry_sdk.get_client().close(timeout=2.0)

        return BenchApp(app, spec, engine, flush=flush, shutdown=shutdown)

    from pydantic import SecretStr

    from telemetry import TelemetrySettings, setup_telemetry
    from telemetry.settings import Environment, SentryTracesMode

    settings = TelemetrySettings(
        _env_file=None,  # type: ignore[call-arg]
        environment=Environment(spec.environment),
        sentry_dsn=SecretStr(sentry_dsn),
        sentry_traces=SentryTracesMode(spec.sentry_traces),
        otlp_endpoint=jaeger_url,
        service_name="bench",
        service_version="0",
        log_level="WARNING",
        **dict(spec.overrides),
    )
    handle = setup_telemetry(app, settings, engines=[engine])

    def flush_bridge(timeout: float) -> None:
        handle.force_flush(timeout)

    return BenchApp(app, spec, engine, flush=flush_bridge, shutdown=handle.shutdown)


def _install_flush_signal(bench: BenchApp, marker: Path, timeout: float) -> None:
    """SIGUSR1: flush on a thread, then write ``marker`` (atomically)."""

    def flush_then_mark() -> None:
        try:
            bench.flush(timeout)
        finally:
            partial = marker.with_suffix(".tmp")
            partial.write_text("flushed\n")
            partial.replace(marker)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=flush_then_mark, name="bench-flush", daemon=True).start()

    signal.signal(signal.SIGUSR1, on_signal)


def create_app_from_env() -> FastAPI:
    """uvicorn factory: the configuration comes from ``BENCH_*`` variables."""
    bench = build_app(
        os.environ["BENCH_CONFIG"],
        jaeger_url=os.environ["BENCH_JAEGER_URL"],
        sentry_dsn=os.environ["BENCH_SENTRY_DSN"],
        database_url=os.environ["BENCH_DATABASE_URL"],
    )
    marker = os.environ.get("BENCH_FLUSH_MARKER")
    if marker:
        _install_flush_signal(bench, Path(marker), float(os.environ.get("BENCH_FLUSH_S", "5")))
    return bench.app
