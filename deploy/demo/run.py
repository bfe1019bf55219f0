"""`python -m demo`: the whole pipeline on one machine, no server to install.

Starts the model provider and the demo API as two uvicorn processes (so a trace crosses a
process boundary), sends a burst of mixed traffic, then one failing request whose trace id it
chose, scrapes `/metrics`, stops both services gracefully (telemetry flushes on shutdown) and
prints where that one request shows up: Sentry event, span tree, exemplar, log lines. With no
SENTRY_DSN and no OTLP endpoint set, the sinks are files in the output directory.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from demo import report
from demo.config import BUILTIN_API_KEYS
from demo.loadgen import TargetUnreachable, run_load

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
API_SERVICE = "agentic-platform"
PROVIDER_SERVICE = "model-provider"
SENTRY_FILE = "sentry-events.jsonl"
SPANS_FILE = "spans.otlp.jsonl"
DEMO_KEY = next(iter(BUILTIN_API_KEYS))


class DemoError(RuntimeError):
    pass


@dataclass
class Service:
    name: str
    url: str
    log: Path
    process: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(out: Path, service_name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ENVIRONMENT="staging",
        OTEL_SERVICE_NAME=service_name,
        TELEMETRY_FILE_SINK_DIR=str(out),
        TELEMETRY_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    # A release that reads like a real one; the services are not installed distributions.
    env.setdefault("SERVICE_VERSION", importlib.metadata.version("otel-sentry-bridge"))
    env.pop("REDIS_URL", None)  # the local demo runs without Redis: the cache is skipped
    env.pop("DEMO_API_KEYS", None)  # the load generator uses the built-in keys
    return env


def start(name: str, target: str, env: dict[str, str], out: Path) -> Service:
    port = free_port()
    log = out / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Service(name, f"http://127.0.0.1:{port}", log, process)


def wait_ready(service: Service, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            tail = service.log.read_text(errors="replace")[-3000:]
            raise DemoError(f"{service.name} exited during start-up:\n{tail}")
        try:
            if httpx.get(f"{service.url}/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.15)
    raise DemoError(f"{service.name} was not ready after {timeout:.0f} s (see {service.log})")


def stop(service: Service, timeout: float = 15.0) -> None:
    """SIGTERM: uvicorn runs the lifespan shutdown, which flushes the telemetry pipeline."""
    if service.process.poll() is not None:
        return
    service.process.send_signal(signal.SIGTERM)
    try:
        service.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()
        print(f"warning: {service.name} ignored SIGTERM; killed (telemetry may be lost)")


def send_failing_request(api: Service) -> tuple[str, int]:
    """An execution whose model call fails, under a trace id chosen here (W3C traceparent)."""
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    headers = {"X-API-Key": DEMO_KEY}
    with httpx.Client(base_url=api.url, timeout=15.0, headers=headers) as client:
        created = client.post("/api/v1/agents", json={"name": "report-agent"})
        if created.status_code != 201:
            raise DemoError(f"could not create the demo agent: {created.status_code}")
        response = client.post(
            "/api/v1/agents/execute",
            json={
                "agent_id": created.json()["id"],
                "input": "Summarise today's incidents.",
                "simulate": "provider_unavailable",
            },
            headers={"traceparent": traceparent},
        )
    return trace_id, response.status_code


def send_agent_request(api: Service) -> str:
    """A successful agent execution (agent -> LLM -> tool -> LLM) under a chosen trace id."""
    trace_id = secrets.token_hex(16)
    headers = {"X-API-Key": DEMO_KEY}
    with httpx.Client(base_url=api.url, timeout=15.0, headers=headers) as client:
        created = client.post("/api/v1/agents", json={"name": "support-agent"})
        if created.status_code != 201:
            raise DemoError(f"could not create the demo agent: {created.status_code}")
        response = client.post(
            "/api/v1/agents/execute",
            json={"agent_id": created.json()["id"], "input": "Is the checkout service up?"},
            headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        )
    if response.status_code != 200:
        raise DemoError(f"the demo agent failed: {response.status_code} {response.text[:200]}")
    return trace_id


def agent_report(out: Path, trace_id: str) -> tuple[list[str], list[str]]:
    """The span tree of one agent run, with the tokens of each LLM call."""
    rows = report.spans_of_trace(report.read_json_lines(out / SPANS_FILE), trace_id)
    lines = [f"Agent run {trace_id}: invoke_agent -> chat -> execute_tool -> chat (tokens)"]
    lines += report.render_span_tree([r for r in rows if not r.name.startswith(SQL_PREFIXES)])
    names = [row.name for row in rows]
    complete = (
        any(n.startswith("invoke_agent ") for n in names)
        and any(n.startswith("execute_tool ") for n in names)
        and any(row.name.startswith("chat ") and row.tokens for row in rows)
    )
    if not complete:
        lines.append("  MISSING: the agent run lacks its agent, LLM (with tokens) or tool span")
    return lines, [] if complete else ["agent spans"]


#: Database spans left out of the agent tree: the tree is about the agent's steps.
SQL_PREFIXES = ("SELECT", "INSERT", "UPDATE", "DELETE", "connect", "BEGIN", "COMMIT")


def scrape_metrics(service: Service, out: Path) -> str:
    response = httpx.get(f"{service.url}/metrics", headers={"Accept": OPENMETRICS}, timeout=5.0)
    text = response.text if response.status_code == 200 else ""
    (out / f"metrics-{service.name}.txt").write_text(text)
    return text


def clean(out: Path) -> None:
    for pattern in ("*.jsonl", "*.log", "metrics-*.txt", "demo.db*", "report.txt"):
        for path in out.glob(pattern):
            path.unlink()


def compose_report(
    out: Path, trace_id: str, status: int, metrics: dict[str, str]
) -> tuple[list[str], list[str]]:
    """The report lines, and the sinks that lack the trace (empty when all have it)."""
    missing: list[str] = []
    lines = [f"Following trace {trace_id}: POST /api/v1/agents/execute -> {status}", ""]

    if os.environ.get("SENTRY_DSN"):
        lines += ["Sentry: sent to SENTRY_DSN; search the issue stream for", f"  trace:{trace_id}"]
    else:
        events = report.read_json_lines(out / SENTRY_FILE)
        errors = report.sentry_items(events, trace_id, "event")
        lines.append(f"Sentry error event ({SENTRY_FILE}, {len(events)} items in total)")
        if errors:
            transactions = report.sentry_items(events, trace_id, "transaction")
            lines += report.render_sentry_event(errors[0], transactions)
        else:
            lines.append("  MISSING: no error event carries this trace id")
            missing.append("sentry")
    lines.append("")

    rows = report.spans_of_trace(report.read_json_lines(out / SPANS_FILE), trace_id)
    services = sorted({row.service for row in rows})
    lines.append(f"Spans ({SPANS_FILE}): {len(rows)} spans from {', '.join(services) or 'none'}")
    lines += report.render_span_tree(rows)
    for expected in (API_SERVICE, PROVIDER_SERVICE):
        if expected not in services:
            lines.append(f"  MISSING: no span of {expected} in this trace")
            missing.append(f"spans of {expected}")
    lines.append("")

    lines.append("Metrics exemplars (/metrics, OpenMetrics)")
    found = [
        (name, line)
        for name, text in metrics.items()
        for line in report.exemplar_lines(text, trace_id)
    ]
    lines += [f"  {name}: {line}" for name, line in found]
    if not found:
        lines.append("  MISSING: no exemplar carries this trace id")
        missing.append("metrics exemplar")
    lines.append("")

    lines.append("Logs (JSON lines of both services)")
    log_hits = [
        (name, line)
        for name in (API_SERVICE, PROVIDER_SERVICE)
        for line in report.log_lines_with(out / f"{name}.log", trace_id)
    ]
    lines += [f"  {name}: {report.render_log_line(line)}" for name, line in log_hits]
    if not log_hits:
        lines.append("  MISSING: no log line carries this trace id")
        missing.append("logs")
    lines.append("")

    sink_files = [out / SENTRY_FILE, out / SPANS_FILE, *out.glob("*.log"), *out.glob("metrics-*")]
    leaks = report.files_containing(sink_files, list(BUILTIN_API_KEYS))
    if leaks:
        lines.append(f"Secrets: an API key reached {', '.join(leaks)}")
        missing.append("secret scrubbing")
    else:
        lines.append("Secrets: no API key appears in any sink")
    return lines, missing


def run(out: Path, requests: int, concurrency: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    clean(out)
    provider_env = service_env(out, PROVIDER_SERVICE)
    api_env = service_env(out, API_SERVICE)
    api_env["DATABASE_URL"] = f"sqlite+aiosqlite:///{out / 'demo.db'}"
    started = time.monotonic()
    provider = start(PROVIDER_SERVICE, "demo.model_provider:app", provider_env, out)
    services = [provider]
    try:
        # Both start in parallel; the API only needs the provider's URL, not its readiness.
        api_env["MODEL_PROVIDER_URL"] = provider.url
        api = start(API_SERVICE, "demo.app:app", api_env, out)
        services.append(api)
        wait_ready(provider)
        wait_ready(api)
        print(
            f"services up in {time.monotonic() - started:.1f} s: "
            f"api {api.url}, model provider {provider.url}",
            file=sys.stderr,
        )
        summary = asyncio.run(
            run_load(api.url, requests=requests, concurrency=concurrency, seed=7, progress=True)
        )
        agent_trace = send_agent_request(api)
        # Last, so no later request on the same series replaces its exemplar.
        trace_id, status = send_failing_request(api)
        metrics = {svc.name: scrape_metrics(svc, out) for svc in (api, provider)}
    finally:
        stopping = time.monotonic()
        for service in reversed(services):
            stop(service)
        print(f"services stopped in {time.monotonic() - stopping:.1f} s", file=sys.stderr)
    lines, missing = compose_report(out, trace_id, status, metrics)
    agent_lines, agent_missing = agent_report(out, agent_trace)
    lines += ["", *agent_lines]
    missing += agent_missing
    lines += ["", "Traffic", *(f"  {line}" for line in summary.render().splitlines())]
    lines.append(f"  whole run {time.monotonic() - started:.1f} s; files in {out}")
    text = "\n".join(lines)
    (out / "report.txt").write_text(text + "\n")
    print(text)
    if missing:
        print(f"\nFAILED: the trace is missing from: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=Path("demo-output"))
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=6)
    args = parser.parse_args(argv)
    try:
        return run(args.out_dir.resolve(), args.requests, args.concurrency)
    except (DemoError, TargetUnreachable) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
