"""Metrics under a real ``uvicorn --workers 2``: totals are right whichever worker answers the
scrape, exemplars recorded by one worker are served by the other, and the requests of a
worker killed mid-request leave the in-progress gauge."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.support.net import free_port
from tests.support.processes import ManagedProcess
from tests.support.prometheus import Prometheus

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
ROUTE = "/work/{n}"

APP = textwrap.dedent(
    """
    import asyncio
    import os

    from fastapi import FastAPI
    from opentelemetry import trace
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    from telemetry.metrics import TelemetryMetrics

    app = FastAPI()
    metrics = TelemetryMetrics("multiworker", "1.0.0", "test", exemplar_flush_interval_s=0.2)
    metrics.install(app)


    @app.get("/work/{n}")
    async def work(n: str) -> dict[str, object]:
        context = trace.get_current_span().get_span_context()
        return {"pid": os.getpid(), "trace_id": format(context.trace_id, "032x")}


    @app.get("/hang")
    async def hang() -> None:
        # Test-only: says which worker holds the request, then never answers.
        with open(os.environ["HANG_PID_FILE"], "w") as handle:
            handle.write(str(os.getpid()))
        await asyncio.sleep(3600)


    class WorkerPid:
        # Test-only: tells the test which worker answered, /metrics included.
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            async def send_with_pid(message):
                if message["type"] == "http.response.start":
                    pid = str(os.getpid()).encode()
                    message["headers"] = [*message.get("headers", []), (b"x-worker-pid", pid)]
                await send(message)

            await self.app(scope, receive, send_with_pid)


    app.add_middleware(WorkerPid)
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=TracerProvider(), excluded_urls="/metrics"
    )
    """
)


@pytest.fixture
def multiworker_server(tmp_path: Path) -> Iterator[str]:
    multiproc_dir = tmp_path / "prometheus-multiproc"
    multiproc_dir.mkdir()
    (tmp_path / "mwapp.py").write_text(APP)
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    env["HANG_PID_FILE"] = str(tmp_path / "hang.pid")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "uvicorn", "mwapp:app", "--app-dir", str(tmp_path)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--no-access-log"]
    server = ManagedProcess(argv, tmp_path / "uvicorn.log", cwd=tmp_path, env=env)
    try:
        server.wait_until_ready(
            lambda: server.log_tail(100_000).count("Application startup complete") >= 2,
            timeout=60,
            name="uvicorn --workers 2",
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        shutil.rmtree(multiproc_dir, ignore_errors=True)
    assert not server.running()


def fresh_get(url: str, **kwargs: Any) -> httpx.Response:
    # A new connection per request: the kernel hands each one to either worker.
    with httpx.Client(timeout=10) as client:
        return client.get(url, **kwargs)


def scrape(base: str) -> tuple[str, dict[tuple[str, str], Any]]:
    """(worker pid, {(sample name, route): sample}) from one OpenMetrics scrape."""
    response = fresh_get(f"{base}/metrics", headers={"accept": OPENMETRICS})
    assert response.status_code == 200
    samples = {
        (s.name, s.labels.get("route", "") + s.labels.get("le", "")): s
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.labels.get("route") == ROUTE
    }
    return response.headers["x-worker-pid"], samples


def serve_from_both_workers(base: str, at_least: int) -> dict[str, list[str]]:
    """Send requests until both workers served some; {worker pid: trace ids it served}."""
    served: dict[str, list[str]] = {}
    sent = 0
    while len(served) < 2 or sent < at_least:
        assert sent < 1000, f"one worker answered every request: {served.keys()}"
        body = fresh_get(f"{base}/work/{sent}").json()
        served.setdefault(str(body["pid"]), []).append(body["trace_id"])
        sent += 1
    return served


def test_totals_and_exemplars_are_served_by_every_worker(multiworker_server: str) -> None:
    base = multiworker_server
    served = serve_from_both_workers(base, at_least=40)
    sent = sum(len(traces) for traces in served.values())
    all_traces = {t for traces in served.values() for t in traces}

    # Make the last request's worker known, then let both workers flush their exemplars.
    last = fresh_get(f"{base}/work/last").json()
    sent += 1
    last_trace, last_pid = last["trace_id"], str(last["pid"])
    all_traces.add(last_trace)
    time.sleep(1.0)

    answered: set[str] = set()
    for _ in range(200):
        pid, samples = scrape(base)
        answered.add(pid)
        total = samples[("http_server_requests_total", ROUTE)]
        count = samples[("http_server_request_duration_seconds_count", ROUTE)]
        assert total.value == sent and count.value == sent, f"scrape of worker {pid}"
        # The newest counter exemplar is the last request's, whichever worker served it.
        assert total.exemplar is not None and total.exemplar.labels["trace_id"] == last_trace
        bucket_exemplars = [
            s.exemplar.labels["trace_id"]
            for (name, _), s in samples.items()
            if name.endswith("_bucket") and s.exemplar is not None
        ]
        assert bucket_exemplars and set(bucket_exemplars) <= all_traces
        if len(answered) == 2:
            break
    # Proven both ways: the worker that did not serve the last request served its exemplar.
    assert answered == set(served) and last_pid in answered


def test_prometheus_scrapes_exact_totals_and_exemplars(
    multiworker_server: str, prometheus_factory: Callable[..., Prometheus]
) -> None:
    prometheus = prometheus_factory(targets=[multiworker_server.removeprefix("http://")])
    prometheus.wait_for_targets_up()
    served = serve_from_both_workers(multiworker_server, at_least=30)
    sent = sum(len(traces) for traces in served.values())
    all_traces = {t for traces in served.values() for t in traces}
    selector = f'http_server_requests_total{{route="{ROUTE}"}}'
    prometheus.wait_for_query(
        f"sum({selector})", lambda result: float(result[0]["value"][1]) == sent if result else False
    )
    stored = prometheus.wait_for_exemplars(
        selector, lambda labels: labels["trace_id"] in all_traces
    )
    assert all(
        labels["trace_id"] in all_traces and len(labels["span_id"]) == 16 for labels in stored
    )
    histogram = f'http_server_request_duration_seconds_bucket{{route="{ROUTE}"}}'
    assert prometheus.wait_for_exemplars(histogram, lambda labels: labels["trace_id"] in all_traces)


def in_progress(base: str) -> tuple[str, float]:
    """(worker pid, in-progress requests of every worker) from one scrape."""
    response = fresh_get(f"{base}/metrics", headers={"accept": OPENMETRICS})
    assert response.status_code == 200
    total = sum(
        s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "http_server_requests_in_progress"
    )
    return response.headers["x-worker-pid"], total


def test_a_worker_killed_mid_request_leaves_the_in_progress_gauge(
    multiworker_server: str, tmp_path: Path
) -> None:
    base = multiworker_server
    serve_from_both_workers(base, at_least=4)  # both workers have written their files
    pid_file = tmp_path / "hang.pid"
    failures: list[BaseException] = []

    def hang() -> None:
        try:
            fresh_get(f"{base}/hang")
        except httpx.HTTPError as error:  # the worker dies under it
            failures.append(error)

    client = threading.Thread(target=hang, daemon=True)
    client.start()
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the /hang request never reached a worker"
        time.sleep(0.05)
    hanging = int(pid_file.read_text())
    assert [in_progress(base)[1] for _ in range(4)] == [1.0] * 4
    os.kill(hanging, signal.SIGKILL)
    client.join(timeout=20)
    assert failures, "the request held by the killed worker ended with the connection"

    # Healed at the next scrape, whichever worker (the survivor, or uvicorn's replacement
    # for the dead one) answers it; counted 1 forever before the sweep.
    answered: list[tuple[str, float]] = []
    deadline = time.monotonic() + 15
    while True:
        answered.append(in_progress(base))
        if answered[-1][1] == 0.0:
            break
        assert time.monotonic() < deadline, f"still in progress after SIGKILL: {answered}"
        time.sleep(0.2)
    assert all(pid != str(hanging) for pid, _ in answered)
    # And stays healed: every later scrape, by any worker, agrees.
    assert [in_progress(base)[1] for _ in range(6)] == [0.0] * 6
