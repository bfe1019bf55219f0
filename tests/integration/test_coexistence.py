"""Coexistence with what the app already has (issue 13): its own sentry-sdk client, its own
global ``TracerProvider``, FastAPI's native telemetry and mounted sub-apps.

Both a sentry-sdk client and the global tracer provider are process-wide and set once, so
each case runs in a fresh interpreter; the real receivers (OTLP for Jaeger, the Sentry
protocol with its OTLP endpoint) run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.otlp_receiver import OTLPReceiver
from tests.support.sentry_receiver import SentryReceiver

ROOT = Path(__file__).resolve().parents[2]


def run_script(code: str, **env: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; its last stdout line is a JSON result."""
    variables = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "SENTRY_", "TELEMETRY_", "ENVIRONMENT", "FASTAPI_"))
    }
    variables.update(env, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=variables,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def test_an_existing_sentry_client_is_adopted_with_its_options(
    sentry_receiver: SentryReceiver,
) -> None:
    result = run_script(
        """
        import json
        import sentry_sdk

        def app_hook(event, hint):
            event.setdefault("tags", {})["app_hook"] = "ran"
            return event

        def app_crumb_hook(crumb, hint):
            crumb["data"] = {**crumb.get("data", {}), "app_crumb_hook": "ran"}
            return crumb

        sentry_sdk.init(
            dsn=__import__("os").environ["APP_DSN"],
            release="shop@9.9.9",
            environment="prod-eu",
            before_send=app_hook,
            before_breadcrumb=app_crumb_hook,
            traces_sample_rate=0.25,
            max_breadcrumbs=7,
        )
        app_client = sentry_sdk.get_client()

        from telemetry import TelemetrySettings, capture_exception, setup_telemetry

        handle = setup_telemetry(
            settings=TelemetrySettings(environment="production", service_name="coexist")
        )
        client = sentry_sdk.get_client()

        def fail(password):
            raise RuntimeError("checkout failed")

        sentry_sdk.add_breadcrumb(message="login with api_key=crumb-secret-9", category="auth")
        try:
            fail("hunter2-secret")
        except RuntimeError as exc:
            capture_exception(exc)
        sentry_sdk.flush(5)
        metrics = handle.metrics.render("text/plain")[0].decode()
        print(json.dumps({
            "replaced": client is not app_client,
            "old_closed": app_client.transport is None,
            "max_breadcrumbs": client.options["max_breadcrumbs"],
            "app_integrations": sorted(app_client.integrations),
            "integrations": sorted(client.integrations),
            "traces": handle.profile.traces_sample_rate,
            "traces_from": handle.profile.traces_rate_source,
            "release": handle.settings.release,
            "sent": [l for l in metrics.splitlines()
                     if l.startswith('telemetry_sentry_events_sent_total{kind="error"')],
        }))
        handle.shutdown()
        """,
        APP_DSN=sentry_receiver.dsn,
    )
    (event,) = sentry_receiver.wait_for("event")
    # The app's own options: release, environment, hook, rates, the other options.
    assert event["release"] == "shop@9.9.9"
    assert event["environment"] == "prod-eu"
    assert event["tags"]["app_hook"] == "ran"
    (crumb,) = [c for c in event["breadcrumbs"]["values"] if c.get("category") == "auth"]
    assert crumb["data"] == {"app_crumb_hook": "ran"}  # the app's breadcrumb hook still runs
    assert crumb["message"] == "login with api_key=[Filtered]"  # and the bridge scrubs after
    assert result["max_breadcrumbs"] == 7
    # The app's auto-enabled web integrations would capture and trace a second time.
    assert "starlette" in result["app_integrations"]
    assert not {"starlette", "fastapi"} & set(result["integrations"])
    assert "logging" in result["integrations"]
    assert result["traces"] == 0.25
    assert result["traces_from"] == "SENTRY_TRACES_SAMPLE_RATE"
    assert result["release"] == "shop@9.9.9"  # one release: metrics and baggage too
    # The bridge's additions: scrubbing (frame locals), trace linking, transport counting.
    frames = event["exception"]["values"][0]["stacktrace"]["frames"]
    local = next(f for f in frames if f["function"] == "fail")["vars"]["password"]
    assert "hunter2" not in json.dumps(local)
    assert len(event["contexts"]["trace"]["trace_id"]) == 32
    assert result["sent"] and not result["sent"][0].endswith(" 0.0")
    # Re-initialised with the merged options; the app's old client flushed and closed.
    assert result["replaced"] and result["old_closed"]
    assert "sentry_client=adopted" in result["stderr"]


def test_a_conflicting_sentry_client_is_refused_with_what_to_do(
    sentry_receiver: SentryReceiver,
) -> None:
    result = run_script(
        """
        import json
        import sentry_sdk
        sentry_sdk.init(dsn="http://otherkey@127.0.0.1:9/5")
        from telemetry import TelemetryConfigError, TelemetrySettings, setup_telemetry
        try:
            setup_telemetry(settings=TelemetrySettings(
                environment="production", sentry_dsn=__import__("os").environ["APP_DSN"]))
        except TelemetryConfigError as exc:
            print(json.dumps({"error": str(exc)}))
        else:
            print(json.dumps({"error": None}))
        """,
        APP_DSN=sentry_receiver.dsn,
    )
    assert result["error"] is not None
    assert "sentry_sdk.init()" in result["error"] and "SENTRY_DSN" in result["error"]
    assert "drop" in result["error"]


def test_an_existing_tracer_provider_gets_the_bridge_processors(
    otlp_receiver: OTLPReceiver, sentry_receiver: SentryReceiver
) -> None:
    """A third-party tracer taken from the app's provider before setup reaches Jaeger and
    Sentry's OTLP endpoint, scrubbed like every span."""
    result = run_script(
        """
        import json, os
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        app_provider = TracerProvider()
        trace.set_tracer_provider(app_provider)
        third_party = trace.get_tracer("some.llm.instrumentation")  # before setup

        from telemetry import TelemetrySettings, setup_telemetry

        handle = setup_telemetry(settings=TelemetrySettings(
            environment="staging", service_name="coexist",
            sentry_dsn=os.environ["APP_DSN"], otlp_endpoint=os.environ["OTLP"],
        ))
        with third_party.start_as_current_span("llm.chat") as span:
            span.set_attribute("http.url", "https://api.example/v1?api_key=sk-live-123")
            trace_id = format(span.get_span_context().trace_id, "032x")
        handle.force_flush()
        joined = handle.tracer_provider is app_provider
        handle.shutdown()
        # The app's provider is still the app's: shutdown stopped only the bridge's part.
        with third_party.start_as_current_span("after") as span:
            still = span.is_recording()
        print(json.dumps({"trace_id": trace_id, "joined": joined, "still": still}))
        """,
        APP_DSN=sentry_receiver.dsn,
        OTLP=otlp_receiver.url,
    )
    assert result["joined"] and result["still"]
    trace_id = result["trace_id"]
    (jaeger,) = otlp_receiver.wait_for_spans(lambda s: s.trace_id == trace_id)
    (sentry,) = sentry_receiver.wait_for_spans(lambda s: s.trace_id == trace_id)
    for span in (jaeger, sentry):
        assert span.name == "llm.chat"
        assert "sk-live-123" not in str(span.attributes)
    assert "tracer_provider=app" in result["stderr"]
    assert "existing TracerProvider" in result["stderr"]


_MOUNTED_APP = """
import json, os
from fastapi import FastAPI
from starlette.testclient import TestClient

from telemetry import TelemetrySettings, setup_telemetry

app = FastAPI()
v2 = FastAPI()

@v2.get("/things/{tid}")
def thing(tid: str):
    return {"tid": tid}

@app.get("/items/{item_id}")
def item(item_id: int):
    return {"item_id": item_id}

app.mount("/v2", v2)
handle = setup_telemetry(app, TelemetrySettings(
    environment="staging", service_name="coexist", otlp_endpoint=os.environ["OTLP"],
    fastapi_instrumentation=os.environ["MODE"],
))
with TestClient(app) as client:
    assert client.get("/v2/things/abc").status_code == 200
    assert client.get("/items/3").status_code == 200
    metrics = client.get("/metrics").text
handle.force_flush()
labels = sorted({
    line.split('route="')[1].split('"')[0]
    for line in metrics.splitlines()
    if line.startswith("http_server_requests_total{")
})
print(json.dumps({"labels": labels}))
"""


@pytest.mark.parametrize("mode", ["contrib", "native"])
def test_a_mounted_fastapi_app_gets_one_server_span_named_like_the_metric(
    otlp_receiver: OTLPReceiver, mode: str
) -> None:
    result = run_script(_MOUNTED_APP, OTLP=otlp_receiver.url, MODE=mode)
    assert result["labels"] == ["/items/{item_id}", "/v2/things/{tid}"]
    otlp_receiver.wait_for_spans(
        lambda s: s.kind == "SERVER" and s.attributes.get("http.route") == "/items/{item_id}"
    )
    servers = [s for s in otlp_receiver.spans() if s.kind == "SERVER"]
    # One server span per request, its route the metric's label.
    assert sorted(s.attributes["http.route"] for s in servers) == result["labels"]
    assert sorted(s.name for s in servers) == ["GET /items/{item_id}", "GET /v2/things/{tid}"]
    if mode == "native":
        # FastAPI's operation spans are kept, children of the one server span.
        server = next(s for s in servers if s.attributes["http.route"] == "/v2/things/{tid}")
        names = {
            s.name
            for s in otlp_receiver.spans()
            if s.trace_id == server.trace_id and s.kind != "SERVER"
        }
        assert "fastapi.endpoint" in names, names
        assert all(s.scope_name == "fastapi" for s in servers)
    else:
        assert all(s.scope_name != "fastapi" for s in servers)


def test_a_starlette_app_keeps_working(otlp_receiver: OTLPReceiver) -> None:
    result = run_script(
        """
        import json, os
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Mount, Route
        from starlette.testclient import TestClient
        from telemetry import TelemetrySettings, setup_telemetry

        async def show(request):
            return JSONResponse({"ok": True})

        app = Starlette(routes=[
            Route("/s/{x}", show),
            Mount("/m", routes=[Route("/k/{y}", show)]),
        ])
        # native asked for: a plain Starlette app has none, contrib instruments it.
        handle = setup_telemetry(app, TelemetrySettings(
            environment="staging", service_name="coexist", otlp_endpoint=os.environ["OTLP"],
            fastapi_instrumentation="native",
        ))
        with TestClient(app) as client:
            assert client.get("/s/1").status_code == 200
            assert client.get("/m/k/2").status_code == 200
            metrics = client.get("/metrics").text
        handle.force_flush()
        labels = sorted({
            line.split('route="')[1].split('"')[0]
            for line in metrics.splitlines()
            if line.startswith("http_server_requests_total{")
        })
        print(json.dumps({"labels": labels}))
        """,
        OTLP=otlp_receiver.url,
    )
    assert result["labels"] == ["/m/k/{y}", "/s/{x}"]
    otlp_receiver.wait_for_spans(lambda s: s.kind == "SERVER", count=2)
    servers = [s for s in otlp_receiver.spans() if s.kind == "SERVER"]
    assert sorted(s.attributes["http.route"] for s in servers) == result["labels"]
