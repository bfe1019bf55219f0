from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from telemetry import TelemetrySettings, setup_telemetry
from telemetry.tracing.instrumentation import MissingExtraError

SECRET_KEY = "f00dfacecafe4b1d"


def app_with_lifespan(events: list[str]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("app startup")
        yield
        events.append("app shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/api/v1/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


def test_lifespan_flushes_without_replacing_the_apps_own(tmp_path: Path) -> None:
    events: list[str] = []
    app = app_with_lifespan(events)
    settings = TelemetrySettings(environment="staging", file_sink_dir=tmp_path)
    handle = setup_telemetry(app, settings)
    try:
        assert setup_telemetry(app) is handle, "a second call must return the same handle"
        with TestClient(app) as client:
            assert client.get("/api/v1/ping").status_code == 200
            assert events == ["app startup"]
        assert events == ["app startup", "app shutdown"]
        assert handle.is_shut_down
        lines = (tmp_path / "spans.otlp.jsonl").read_text().splitlines()
        names = {
            span["name"]
            for line in lines
            for rs in json.loads(line)["resourceSpans"]
            for ss in rs["scopeSpans"]
            for span in ss["spans"]
        }
        assert "GET /api/v1/ping" in names
    finally:
        handle.shutdown()


def test_second_setup_does_not_instrument_twice(tmp_path: Path) -> None:
    app = app_with_lifespan([])
    settings = TelemetrySettings(environment="staging", file_sink_dir=tmp_path)
    handle = setup_telemetry(app, settings)
    try:
        middleware_count = len(app.user_middleware)
        setup_telemetry(app, settings)
        handle.instrument_app(app)
        assert len(app.user_middleware) == middleware_count
    finally:
        handle.shutdown()


def test_startup_line_says_what_is_on_and_hides_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = TelemetrySettings(
        environment="development",
        sentry_dsn=f"https://{SECRET_KEY}@o1.ingest.example.io/42",
    )
    with caplog.at_level(logging.INFO):
        handle = setup_telemetry(None, settings)
    handle.shutdown()
    [line] = [r.getMessage() for r in caplog.records if "telemetry_initialized" in r.getMessage()]
    assert "environment=development" in line
    assert 'sentry="off (development profile)"' in line
    assert "jaeger=off" in line
    assert SECRET_KEY not in caplog.text


def test_missing_extra_names_the_extra() -> None:
    error = MissingExtraError("redis", "opentelemetry-instrumentation-redis")
    assert "pip install 'otel-sentry-bridge[redis]'" in str(error)


def test_metrics_off_serves_no_metrics_and_still_traces(tmp_path: Path) -> None:
    app = app_with_lifespan([])
    settings = TelemetrySettings(
        environment="staging", file_sink_dir=tmp_path, metrics_enabled=False
    )
    handle = setup_telemetry(app, settings)
    try:
        assert handle.metrics is None
        with TestClient(app) as client:
            assert client.get("/metrics").status_code == 404
            assert client.get("/api/v1/ping").status_code == 200
        assert "GET /api/v1/ping" in (tmp_path / "spans.otlp.jsonl").read_text()
    finally:
        handle.shutdown()


def test_shutdown_has_one_deadline_for_all_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Black-holed sinks: each step is given what the earlier ones left of one timeout."""
    import threading

    import telemetry.setup as setup_module

    given: list[tuple[str, float]] = []
    real = setup_module.shutdown_within

    def black_holed(action: object, timeout_s: float, what: str) -> bool:
        given.append((what, timeout_s))
        threading.Event().wait(timeout_s)  # the step hangs for as long as it is allowed
        return False

    settings = TelemetrySettings(environment="staging", file_sink_dir=tmp_path)
    handle = setup_telemetry(None, settings)
    monkeypatch.setattr(setup_module, "shutdown_within", black_holed)
    try:
        handle.shutdown(timeout_s=0.4)
    finally:
        monkeypatch.setattr(setup_module, "shutdown_within", real)
        handle.tracer_provider.shutdown()
    assert given and given[0] == ("spans", pytest.approx(0.4, abs=0.05))
    assert sum(timeout for _, timeout in given) <= 0.4 + 0.05, given
