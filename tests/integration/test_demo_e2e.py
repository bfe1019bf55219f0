"""The demo and its downstream as separate uvicorn processes under the load generator, with
PostgreSQL, Redis, Bugsink, an OTLP receiver and a real Prometheus: one trace id in the
Bugsink event, both services' spans, the exemplar and the JSON log lines."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from demo.config import BUILTIN_API_KEYS
from demo.run import Service, start, stop, wait_ready

from tests.support.bugsink import Bugsink, BugsinkProject
from tests.support.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.support.prometheus import Prometheus

API_KEY = next(iter(BUILTIN_API_KEYS))


def env_for(service: str, otlp: OTLPReceiver, dsn: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTEL_"))}
    env.update(
        ENVIRONMENT="staging",
        OTEL_SERVICE_NAME=service,
        SERVICE_VERSION="3.1.4",
        SENTRY_DSN=dsn,
        TELEMETRY_SENTRY_TRACES="off",  # Bugsink stores error events, not spans
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url,
        TELEMETRY_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def send(url: str, method: str, path: str, trace_id: str, body: Any = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url + path,
        data=data,
        method=method,
        headers={
            "X-API-Key": API_KEY,
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def services(
    tmp_path: Path,
    otlp_receiver: OTLPReceiver,
    bugsink: Bugsink,
    bugsink_project: BugsinkProject,
    postgres_url: str,
    redis_url: str,
) -> Iterator[tuple[Service, Service]]:
    provider = start(
        "model-provider",
        "demo.model_provider:app",
        env_for("model-provider", otlp_receiver, bugsink_project.dsn),
        tmp_path,
    )
    api_env = env_for(
        "demo-api",
        otlp_receiver,
        bugsink_project.dsn,
        DATABASE_URL=postgres_url,
        REDIS_URL=redis_url,
        MODEL_PROVIDER_URL=provider.url,
    )
    api = start("demo-api", "demo.app:app", api_env, tmp_path)
    try:
        wait_ready(provider)
        wait_ready(api)
        yield api, provider
    finally:
        stop(api)
        stop(provider)


def server_span(spans: list[ReceivedSpan], service: str) -> ReceivedSpan:
    return next(s for s in spans if s.kind == "SERVER" and s.service_name == service)


def test_one_trace_id_across_every_sink_of_the_demo(
    services: tuple[Service, Service],
    otlp_receiver: OTLPReceiver,
    bugsink: Bugsink,
    bugsink_project: BugsinkProject,
    prometheus_factory: Any,
) -> None:
    api, provider = services
    prometheus: Prometheus = prometheus_factory(targets=[api.url.removeprefix("http://")])
    prometheus.wait_for_targets_up(timeout=30)
    subprocess.run(
        [sys.executable, "-m", "demo.loadgen", "--base-url", api.url, "--requests", "60",
         "--concurrency", "4", "--no-progress", "--seed", "7"],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip

    crash, handled, execute = (secrets.token_hex(16) for _ in range(3))
    assert send(api.url, "GET", "/api/v1/debug/crash", crash) == 500
    time.sleep(1.5)  # one scrape each, so the next request's exemplar does not replace it
    assert send(api.url, "POST", "/api/v1/debug/handled", handled, {"quota": "lots"}) == 200
    time.sleep(1.5)
    with urllib.request.urlopen(
        urllib.request.Request(
            api.url + "/api/v1/agents",
            data=json.dumps({"name": "e2e-agent"}).encode(),
            method="POST",
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        ),
        timeout=30,
    ) as created:
        agent_id = json.loads(created.read())["id"]
    body = {"agent_id": agent_id, "input": "Summarise the incidents."}
    assert send(api.url, "POST", "/api/v1/agents/execute", execute, body) == 200
    exemplars = {
        trace_id: prometheus.wait_for_exemplars(
            '{__name__=~"http_server_request.*", service="demo-api"}',
            lambda labels, t=trace_id: labels.get("trace_id") == t,  # type: ignore[misc]
            timeout=30,
        )
        for trace_id in (crash, handled, execute)
    }
    assert all(exemplars.values())
    stop(api)  # SIGTERM: the lifespan flushes both pipelines
    stop(provider)

    # Bugsink: both errors, under the trace ids the requests carried.
    crash_event = bugsink.wait_for_event(bugsink_project, lambda e: e.trace_id == crash, 30)
    handled_event = bugsink.wait_for_event(bugsink_project, lambda e: e.trace_id == handled, 30)
    assert handled_event.data["contexts"]["context"]["action"] == "parse_quota"
    assert crash_event.data["user"]["id"]
    assert API_KEY not in json.dumps(crash_event.data)

    # The event's span is the span that failed: the request's server span here.
    crash_spans = otlp_receiver.wait_for_spans(lambda s: s.trace_id == crash)
    failing = server_span(crash_spans, "demo-api")
    assert failing.status_code == "ERROR"
    assert crash_event.data["contexts"]["trace"]["span_id"] == failing.span_id

    # The execution crossed a process boundary: the provider's server span is a child of
    # the demo's `chat` client span (the OpenAI instrumentation's, inside invoke_agent).
    spans = otlp_receiver.wait_for_spans(
        lambda s: s.trace_id == execute and s.service_name == "model-provider"
    )
    spans = otlp_receiver.spans_for_trace(execute)
    downstream = server_span(spans, "model-provider")
    client = next(s for s in spans if s.span_id == downstream.parent_span_id)
    assert client.kind == "CLIENT" and client.service_name == "demo-api"
    assert client.name.startswith("chat ") and client.attributes["gen_ai.usage.input_tokens"] > 0
    names = {s.name for s in spans if s.service_name == "demo-api"}
    assert {"agent.execute", "load agent"} <= names

    # The JSON log lines of both services carry the same trace id.
    for trace_id, service in ((execute, api), (execute, provider), (crash, api)):
        lines = [
            json.loads(line)
            for line in service.log.read_text().splitlines()
            if line.startswith("{")
        ]
        assert any(line.get("trace_id") == trace_id for line in lines), service.name
